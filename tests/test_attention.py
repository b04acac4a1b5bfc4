"""Streamed sentence attention against the naive definition, invariants and the OOM retry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from anchorflow import attention
from anchorflow.attention import (
    check_token_spans,
    sentence_attention,
    token_attentions,
    with_oom_retry,
)
from anchorflow.models.tiny import random_causal_lm
from anchorflow.reference import naive_sentence_attention

LENGTH = 97
SPANS = [[4, 19], [19, 20], [20, 47], [52, 70], [70, 96]]  # gaps, a 1-token sentence, T-1 left out


def _tiny(family: str) -> torch.nn.Module:
    """A 2-layer model with GQA (4 query heads, 2 KV heads), random weights."""
    model = random_causal_lm(family, intermediate_size=48, attn_implementation="eager")
    with torch.no_grad():  # larger query/key weights give peaked, non-uniform attention
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight.mul_(20)
            layer.self_attn.k_proj.weight.mul_(20)
    return model


@pytest.fixture(scope="module", params=["qwen2", "llama"])
def model(request: pytest.FixtureRequest) -> torch.nn.Module:
    return _tiny(request.param)


@pytest.fixture(scope="module")
def input_ids() -> torch.Tensor:
    return torch.randint(0, 64, (1, LENGTH), generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def naive(model: torch.nn.Module, input_ids: torch.Tensor) -> np.ndarray:
    return naive_sentence_attention(model, input_ids, SPANS)


@pytest.mark.parametrize("query_block", [1, 7, 32, 97, 256])
def test_streamed_equals_naive(
    model: torch.nn.Module, input_ids: torch.Tensor, naive: np.ndarray, query_block: int
) -> None:
    streamed = sentence_attention(model, input_ids, SPANS, query_block=query_block)
    assert streamed.dtype == np.float32
    assert streamed.shape == (2, 4, len(SPANS), len(SPANS))
    np.testing.assert_allclose(streamed, naive, rtol=1e-5, atol=0)
    assert model.config._attn_implementation == "eager"


def test_naive_is_not_uniform(naive: np.ndarray) -> None:
    lower = naive[:, :, 3, :3]  # sentence 3 to the earlier sentences, per head
    assert np.ptp(lower.reshape(-1, 3), axis=0).max() > 1e-3


def test_causal_structure(naive: np.ndarray) -> None:
    upper = np.triu(np.ones((len(SPANS), len(SPANS)), dtype=bool), k=1)
    assert (naive[..., upper] == 0).all()
    assert (naive[..., ~upper] > 0).all()
    single = naive[:, :, 1, 1]  # a 1-token sentence attends to itself, nothing is masked
    assert (single > 0).all()


def test_token_rows_sum_to_one(model: torch.nn.Module, input_ids: torch.Tensor) -> None:
    for layer in token_attentions(model, input_ids):
        np.testing.assert_allclose(layer.sum(axis=-1), 1.0, rtol=1e-5)


def test_partition_rows_sum_to_one(model: torch.nn.Module, input_ids: torch.Tensor) -> None:
    bounds = [0, 1, 30, 31, 64, LENGTH]
    spans = np.array(list(zip(bounds[:-1], bounds[1:], strict=True)))
    matrices = sentence_attention(model, input_ids, spans, query_block=10)
    lengths = spans[:, 1] - spans[:, 0]
    np.testing.assert_allclose((matrices * lengths).sum(axis=-1), 1.0, rtol=1e-5)


def test_output_matches_eager_logits(model: torch.nn.Module, input_ids: torch.Tensor) -> None:
    """The streamed attention feeds later layers exactly as eager attention does."""
    captured = {}

    def keep_hidden(_module: torch.nn.Module, _args: tuple, output: object) -> None:
        captured.setdefault("streamed", output.last_hidden_state.detach().clone())

    handle = model.base_model.register_forward_hook(keep_hidden)
    try:
        sentence_attention(model, input_ids, SPANS, query_block=13)
    finally:
        handle.remove()
    with torch.no_grad():
        eager = model.base_model(input_ids=input_ids, use_cache=False).last_hidden_state
    torch.testing.assert_close(captured["streamed"], eager, rtol=1e-4, atol=1e-5)


def test_oom_retry_halves_the_block() -> None:
    tried = []

    def run(block: int) -> int:
        tried.append(block)
        if block > 24:
            raise torch.OutOfMemoryError(
                "CUDA out of memory. Tried to allocate 2.00 GiB (injected)"
            )
        return block

    assert with_oom_retry(run, 100) == 12
    assert tried == [100, 50, 25, 12]


def test_oom_retry_gives_up_at_one() -> None:
    blocks = []

    def run(block: int) -> int:
        blocks.append(block)
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")

    # accelerate's find_executable_batch_size gives up with a RuntimeError below one row
    with pytest.raises(RuntimeError, match="No executable batch size"):
        with_oom_retry(run, 4)
    assert blocks == [4, 2, 1]


def test_oom_in_forward_is_retried(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    naive: np.ndarray,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_pass = attention._streamed_pass
    blocks = []

    def oom_above_16(model, input_ids, spans, query_block):  # noqa: ANN001, ANN202
        blocks.append(query_block)
        if query_block > 16:
            raise torch.OutOfMemoryError(
                "CUDA out of memory. Tried to allocate 2.00 GiB (injected)"
            )
        return real_pass(model, input_ids, spans, query_block)

    monkeypatch.setattr(attention, "_streamed_pass", oom_above_16)
    result = sentence_attention(model, input_ids, SPANS, query_block=64)
    assert blocks == [64, 32, 16]
    np.testing.assert_allclose(result, naive, rtol=1e-5, atol=0)


@pytest.mark.parametrize(
    ("spans", "message"),
    [
        ([[0, 5], [5, 5]], "empty"),
        ([[0, 5], [4, 9]], "overlap"),
        ([[0, 5], [5, LENGTH + 1]], r"lie in"),
        ([[0, 5, 6]], "shape"),
        ([], "shape"),
    ],
)
def test_bad_spans_are_rejected(spans: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_token_spans(spans, LENGTH)


def test_streamed_attention_outside_extraction_fails() -> None:
    query = torch.zeros(1, 2, 3, 4)
    with pytest.raises(RuntimeError, match="only inside"):
        attention._streamed_attention(torch.nn.Module(), query, query, query, None, 1.0)


def test_float16_head_dim_128_matches_eager_output_attentions() -> None:
    """float16 at head_dim 128 (the 14B and 8B models' head size): the streamed matrices equal
    the definition from eager ``output_attentions`` within rtol 1e-5 (entries above 1e-4).

    Eager scales ``q @ k^T`` after the float16 product and returns float16 probabilities; the
    streamed pass does the same, so only float32 summation order differs (measured 1e-7). Scaling
    the query first, as this module once did, differs by 7e-4; keeping float32 probabilities by
    6e-5: both fail this tolerance."""
    model = random_causal_lm(
        "qwen2",
        dtype=torch.float16,
        vocab_size=256,
        hidden_size=256,
        intermediate_size=256,
        num_hidden_layers=4,
        num_attention_heads=2,
        num_key_value_heads=1,
        attn_implementation="eager",
    )
    assert model.config.hidden_size // model.config.num_attention_heads == 128
    with torch.no_grad():  # sharper attention, scores of tens: float16 rounding matters
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight.mul_(3)
            layer.self_attn.k_proj.weight.mul_(3)
    length = 250
    input_ids = torch.randint(0, 256, (1, length), generator=torch.Generator().manual_seed(1))
    bounds = np.arange(4, length - 3, 17)
    spans = np.stack([bounds[:-1], bounds[1:]], axis=1)
    naive = naive_sentence_attention(model, input_ids, spans)
    streamed = sentence_attention(model, input_ids, spans, query_block=64)
    visible = naive > 1e-4
    relative = np.abs(streamed - naive)[visible] / naive[visible]
    assert relative.max() < 1e-5, f"max relative difference {relative.max():.2e}"
    np.testing.assert_allclose(streamed, naive, rtol=0, atol=1e-8)
