"""The white-box machinery on a real pretrained LM (SmolLM2-135M-Instruct) and a real trace.

Marker ``realmodel``. Needs the GGUF and its float32 export, fetched by
``python scripts/fetch_smollm2.py`` (``make test-all`` fetches it), and the real traces in
``tests/data``; skips with the reason when the model is not fetched. The trace is 4682_correct (the
paper's Figure 6 trace) read by SmolLM2's own tokenizer, cut at a sentence boundary after 1024
tokens for the attention checks and at 1024 tokens for suppression, as ``demo/real-sample.yaml``.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from real_data import (
    QWEN14B_ROLLOUTS,
    REAL_ROLLOUTS,
    SAMPLING_FOLDER,
)

from anchorflow.attention import sentence_attention, token_attentions
from anchorflow.interventions.decode import GenerationItem, SamplingSettings, generate
from anchorflow.interventions.heads import HeadIntervention, apply_interventions, head_geometry
from anchorflow.interventions.prompts import build_prompt
from anchorflow.models import smollm2 as smollm2_files
from anchorflow.models.loading import encode_text, load_model
from anchorflow.reference import naive_sentence_attention, reference_suppression_matrix
from anchorflow.sentences import sentence_record, token_spans
from anchorflow.suppression.divergence import KLSettings
from anchorflow.suppression.matrix import suppression_matrix

GGUF = smollm2_files.gguf_path()
TOKENIZER = smollm2_files.tokenizer_path()
EXPORT = smollm2_files.model_path()
LAYERS, HEADS, KV_HEADS = 30, 9, 3
TRACE = "4682_correct"
CUT_TOKENS = 1024
SUPPRESSED_SENTENCES = 4

needs_smollm2 = pytest.mark.skipif(
    not (GGUF.is_file() and (EXPORT / "config.json").is_file()),
    reason=f"SmolLM2 is not fetched to {GGUF.parent}: run `anchorflow-fetch-smollm2`",
)
pytestmark = [pytest.mark.realmodel, needs_smollm2]

SPEC = {
    "name": "smollm2",
    "source": "folder",
    "path": str(EXPORT),
    "dtype": "float32",
    "rollouts": QWEN14B_ROLLOUTS,
}
GGUF_SPEC = {**SPEC, "source": "gguf", "path": str(GGUF), "tokenizer": str(TOKENIZER)}


def trace_folder(trace: str) -> Path:
    problem, correctness = trace.split("_")
    return (
        REAL_ROLLOUTS
        / QWEN14B_ROLLOUTS
        / SAMPLING_FOLDER
        / f"{correctness}_base_solution"
        / f"problem_{problem}"
    )


@dataclass(frozen=True)
class RealTrace:
    """A real trace as SmolLM2 reads it: ``input_ids [1, T]``, sentence token spans ``[n, 2]``
    (offsets rule, model-input coordinates), and the first ``n_cut`` sentences, which end at
    ``cut`` >= 1024 tokens."""

    input_ids: torch.Tensor
    spans: np.ndarray
    n_cut: int
    cut: int

    def attention_input(self) -> tuple[torch.Tensor, np.ndarray]:
        """The cut ``input_ids [1, cut]`` and spans ``[n_cut + 1, 2]`` tiling ``[0, cut)``: the
        prompt before the first sentence is span 0, so every token is in a span."""
        sentences = self.spans[: self.n_cut]
        prompt = np.array([[0, sentences[0, 0]]])
        return self.input_ids[:, : self.cut], np.concatenate([prompt, sentences])


@pytest.fixture(scope="module")
def smollm2() -> tuple[torch.nn.Module, Any]:
    """SmolLM2 dequantised to float32 (SDPA; the stages switch to their own attention)."""
    return load_model(SPEC, attn_implementation="sdpa")


@pytest.fixture(scope="module")
def real_trace(smollm2) -> RealTrace:
    _, tokenizer = smollm2
    full_cot = json.loads((trace_folder(TRACE) / "base_solution.json").read_text())["full_cot"]
    record = sentence_record(full_cot, "head")
    spans = token_spans(tokenizer, full_cot, [tuple(span) for span in record["char_spans"]])
    offsets = np.asarray(spans.offsets, dtype=np.int64)
    input_ids = encode_text(tokenizer, full_cot)
    assert input_ids.shape[1] == spans.n_tokens
    n_cut = int(np.searchsorted(offsets[:, 1], CUT_TOKENS)) + 1
    return RealTrace(input_ids, offsets, n_cut, int(offsets[n_cut - 1, 1]))


@pytest.fixture(scope="module")
def streamed(smollm2, real_trace) -> np.ndarray:
    """Streamed sentence attention of the cut trace, ``[30, 9, n + 1, n + 1]``."""
    input_ids, spans = real_trace.attention_input()
    return sentence_attention(smollm2[0], input_ids, spans, query_block=200)


def test_model_is_the_trained_smollm2(smollm2) -> None:
    model, tokenizer = smollm2
    config = model.config
    assert (config.model_type, config.num_hidden_layers) == ("llama", LAYERS)
    assert (config.num_attention_heads, config.num_key_value_heads) == (HEADS, KV_HEADS)
    assert next(model.parameters()).dtype == torch.float32
    question = [{"role": "user", "content": "What is the capital of France?"}]
    prompt = tokenizer.apply_chat_template(question, add_generation_prompt=True, tokenize=False)
    items = [GenerationItem("capital", prompt, 0)]
    settings = SamplingSettings(temperature=0.0, top_p=1.0, max_new_tokens=10, batch_size=1)
    assert "Paris" in generate(model, tokenizer, items, settings)[0]["text"]


def test_gguf_load_equals_the_exported_folder(smollm2, real_trace) -> None:
    """The GGUF loader path (dequantised on load) gives the same model and tokenizer as the
    float32 folder the fetch script exported from it."""
    model, exported = smollm2
    from_gguf, gguf_tokenizer = load_model(GGUF_SPEC, attn_implementation="sdpa")
    text = json.loads((trace_folder(TRACE) / "base_solution.json").read_text())["full_cot"]
    assert exported(text, return_offsets_mapping=True) == gguf_tokenizer(
        text, return_offsets_mapping=True
    )
    input_ids = real_trace.input_ids[:, :128]
    with torch.no_grad():
        assert torch.equal(from_gguf(input_ids).logits, model(input_ids).logits)


def test_streamed_attention_equals_naive_for_every_head(smollm2, real_trace, streamed) -> None:
    input_ids, spans = real_trace.attention_input()
    assert input_ids.shape[1] >= CUT_TOKENS and len(spans) > 20
    naive = naive_sentence_attention(smollm2[0], input_ids, spans)
    assert streamed.shape == naive.shape == (LAYERS, HEADS, len(spans), len(spans))
    np.testing.assert_allclose(streamed, naive, rtol=0, atol=1e-4)


def test_every_attention_row_sums_to_one(smollm2, real_trace, streamed) -> None:
    input_ids, spans = real_trace.attention_input()
    for layer, heads in enumerate(token_attentions(smollm2[0], input_ids)):
        rows = heads.astype(np.float64).sum(axis=-1)  # [heads, T]
        np.testing.assert_allclose(rows, 1.0, rtol=0, atol=1e-5, err_msg=f"layer {layer}")
    lengths = (spans[:, 1] - spans[:, 0]).astype(np.float64)
    sentence_rows = (streamed.astype(np.float64) * lengths).sum(axis=-1)  # [layers, heads, n]
    np.testing.assert_allclose(sentence_rows, 1.0, rtol=0, atol=1e-5)


def test_scale_one_reproduces_the_baseline_logits(smollm2, real_trace) -> None:
    model, _ = smollm2
    input_ids = real_trace.input_ids[:, :256]
    noop = [HeadIntervention(layer, layer % HEADS, "scale", 1.0) for layer in range(LAYERS)]
    with torch.no_grad():
        baseline = model(input_ids).logits
        with apply_interventions(model, noop):
            assert torch.equal(model(input_ids).logits, baseline)


def test_zero_equals_the_wo_column_edit(smollm2, real_trace) -> None:
    model, _ = smollm2
    _, _, head_dim = head_geometry(model)
    input_ids = real_trace.input_ids[:, :256]
    heads = [(2, 4), (15, 0), (27, 8)]
    edited = copy.deepcopy(model)
    with torch.no_grad():
        for layer, head in heads:
            weight = edited.model.layers[layer].self_attn.o_proj.weight
            weight[:, head * head_dim : (head + 1) * head_dim] = 0.0
        reference = edited(input_ids).logits
        baseline = model(input_ids).logits
        with apply_interventions(model, [HeadIntervention(*pair, "zero") for pair in heads]):
            hooked = model(input_ids).logits
    torch.testing.assert_close(hooked, reference, rtol=0, atol=1e-5)
    assert (hooked - baseline).abs().max() > 1e-2


def test_greedy_tokens_alone_equal_those_in_a_padded_batch(smollm2) -> None:
    model, tokenizer = smollm2
    problems = {
        trace: json.loads((trace_folder(trace) / "problem.json").read_text())["problem"]
        for trace in ("4682_correct", "2189_correct", "3448_correct")
    }
    items = [
        GenerationItem(trace, build_prompt(problem, "chat", tokenizer), seed)
        for seed, (trace, problem) in enumerate(problems.items())
    ]
    lengths = {len(tokenizer(item.prompt)["input_ids"]) for item in items}
    assert len(lengths) == len(items), "the prompts must differ in length to be padded"
    interventions = [HeadIntervention(5, 3, "zero"), HeadIntervention(20, 1, "scale", 1.5)]

    def greedy(batch_size: int) -> list[tuple[str, int]]:
        settings = SamplingSettings(0.0, 1.0, max_new_tokens=12, batch_size=batch_size)
        rows = generate(model, tokenizer, items, settings, interventions)
        return [(row["text"], row["n_tokens"]) for row in rows]

    alone = greedy(1)
    assert greedy(len(items)) == alone
    assert all(text.strip() for text, _ in alone)


def test_suppression_matrix_equals_the_reference_loop(smollm2, real_trace) -> None:
    """The matrix of the trace cut at 1024 tokens (nucleus KL, every layer and head, as the
    real-sample DAG) against the reference's n + 1 full forward passes, for a spread of
    suppressed sentences including the one the cut splits; the loop costs one full forward
    per sentence, so it covers SUPPRESSED_SENTENCES of them."""
    model, _ = smollm2
    settings = KLSettings(mode="nucleus", temperature=0.6, top_p=0.9999, max_k=100)
    n_cut = real_trace.n_cut
    chosen = np.unique(np.linspace(0, n_cut - 1, SUPPRESSED_SENTENCES).round().astype(int))
    assert real_trace.spans[chosen[-1], 1] > CUT_TOKENS > real_trace.spans[chosen[-1], 0]
    fast = suppression_matrix(
        model,
        real_trace.input_ids[0],
        real_trace.spans,
        settings,
        sentences=chosen.tolist(),
        max_tokens=CUT_TOKENS,
    )
    naive = reference_suppression_matrix(
        model, real_trace.input_ids[0], real_trace.spans[chosen], settings, max_tokens=CUT_TOKENS
    )
    assert fast.n_tokens == CUT_TOKENS and fast.suppressed.sum() == len(chosen)
    assert np.isnan(fast.log_kl[n_cut:]).all()
    np.testing.assert_allclose(fast.log_kl[np.ix_(chosen, chosen)], naive, rtol=0, atol=1e-3)
