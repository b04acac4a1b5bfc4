"""Sentence-averaged attention of every head, streamed in one forward pass (method reference §5.2).

``M[layer, head, i, j]`` is the mean token-level attention weight from the tokens of sentence
``i`` (query rows) to the tokens of sentence ``j`` (key columns), causal zeros included, so
blocks above the diagonal are 0 and diagonal blocks average over their zeros as well.

:func:`sentence_attention` swaps the model's attention for :func:`_streamed_attention`
(registered in transformers' ``AttentionInterface``). Per layer it takes the post-RoPE queries
and keys, computes the softmax probabilities for a block of query rows at a time
(``[heads, block, T]``), in eager attention's order of operations: ``(q @ k^T) * scaling`` in
the model's dtype, softmax in float32, the result rounded to the model's dtype (what eager
attention uses for the output and returns as ``output_attentions``). It uses them for the layer's
output and reduces them at once, in float32, to sentence sums: ``P_block @ C`` with ``C`` the
``[T, n]`` key-membership matrix, then ``index_add_`` over the query rows' sentences. Memory
beyond the model is one layer's ``[heads, block, T]`` probabilities plus the
``[layers, heads, n, n]`` result.

:func:`naive_sentence_attention` is the definition itself (``output_attentions=True`` with eager
attention, the mean of every token block), for tests and benchmarks.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch
from tqdm import tqdm
from transformers import AttentionInterface, PreTrainedModel

from anchorflow.memory import halvings, run_with_fallbacks
from anchorflow.models.loading import encode_text
from anchorflow.receivers.heads import vertical_scores

ATTENTION_NAME = "anchorflow_sentence"
log = logging.getLogger(__name__)
Result = TypeVar("Result")


def check_token_spans(token_spans: np.ndarray | list, n_tokens: int) -> np.ndarray:
    """Validate half-open sentence spans ``[n, 2]``: non-empty, in order, non-overlapping, < T."""
    spans = np.asarray(token_spans, dtype=np.int64)
    if spans.ndim != 2 or spans.shape[1] != 2 or len(spans) == 0:
        raise ValueError(f"token spans must have shape [n_sentences, 2], got {spans.shape}")
    starts, ends = spans[:, 0], spans[:, 1]
    if (starts < 0).any() or (ends > n_tokens).any():
        raise ValueError(f"token spans must lie in [0, {n_tokens}] (the model input length)")
    if (ends <= starts).any():
        empty = np.flatnonzero(ends <= starts).tolist()
        raise ValueError(f"sentences {empty} have empty token spans")
    if (starts[1:] < ends[:-1]).any():
        overlapping = (np.flatnonzero(starts[1:] < ends[:-1]) + 1).tolist()
        raise ValueError(f"sentences {overlapping} overlap or precede the sentence before them")
    return spans


@dataclass(frozen=True)
class _BlockPlan:
    """Where the sentence rows of one query block go: rows ``[lo, hi)`` belong to sentences
    ``first..last``; ``local`` ``[hi - lo]`` is each row's sentence minus ``first``, or
    ``last - first + 1`` (a discarded extra row) for rows in no sentence."""

    lo: int
    hi: int
    first: int
    last: int
    local: torch.Tensor


@dataclass
class _Collector:
    """Per-forward state: the block plans, key membership and the per-layer sums."""

    key_membership: torch.Tensor  # [T, n] float32, 1 where key token t is in sentence j
    query_block: int
    plans: dict[int, _BlockPlan]  # block start -> plan, for blocks with sentence rows
    sums: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> [heads, n, n]
    progress: tqdm | None = None  # advanced once per finished layer


def _block_plans(
    spans: np.ndarray, length: int, query_block: int, device: torch.device
) -> dict[int, _BlockPlan]:
    """The plan of every query block that holds rows of some sentence."""
    row_sentence = np.full(length, -1, dtype=np.int64)
    for index, (start, end) in enumerate(spans):
        row_sentence[start:end] = index
    plans = {}
    for start in range(0, length, query_block):
        lo = max(start, int(spans[0, 0]))
        hi = min(start + query_block, int(spans[-1, 1]))
        rows = row_sentence[lo:hi]
        if hi <= lo or (rows < 0).all():
            continue
        first, last = int(rows[rows >= 0].min()), int(rows.max())
        local = np.where(rows >= 0, rows - first, last - first + 1)
        plans[start] = _BlockPlan(lo, hi, first, last, torch.as_tensor(local, device=device))
    return plans


_ACTIVE: contextvars.ContextVar[_Collector | None] = contextvars.ContextVar(
    "anchorflow_sentence_collector", default=None
)


def _add_block(
    sums: torch.Tensor, probabilities: torch.Tensor, key_membership: torch.Tensor, plan: _BlockPlan
) -> None:
    """Add the probabilities of the plan's query rows (``[H, hi - lo, stop]``) to ``sums``
    ``[H, n, n]``: rows are first summed per query sentence, then columns per key sentence."""
    sentences = plan.last - plan.first + 1
    stop = probabilities.shape[-1]
    row_sums = torch.zeros(
        sums.shape[0], sentences + 1, stop, dtype=torch.float32, device=sums.device
    )
    row_sums.index_add_(1, plan.local, probabilities)
    sums[:, plan.first : plan.last + 1] += torch.matmul(
        row_sums[:, :sentences], key_membership[:stop]
    )


def _streamed_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Eager causal attention computed block by block, reducing each block to sentence sums.

    ``query`` ``[1, H, T, d]``, ``key``/``value`` ``[1, H_kv, T, d]`` (post-RoPE). Returns the
    attention output ``[1, T, H, d]`` and no weights.
    """
    collector = _ACTIVE.get()
    if collector is None:
        raise RuntimeError(f"'{ATTENTION_NAME}' attention runs only inside sentence_attention()")
    if attention_mask is not None and attention_mask.ndim == 2 and not bool(attention_mask.all()):
        raise ValueError("padded inputs are not supported; pass one unpadded sequence")
    if getattr(module, "sliding_window", None) is not None:
        raise NotImplementedError("sliding-window attention layers are not supported")
    batch, heads, length, head_dim = query.shape
    kv_heads = key.shape[1]
    if batch != 1:
        raise ValueError(f"sentence attention takes one sequence at a time, got batch {batch}")
    groups = heads // kv_heads
    keys = key[0].transpose(1, 2)  # [H_kv, d, T]
    values = value[0]  # [H_kv, T, d]
    output = torch.empty(length, heads, head_dim, dtype=query.dtype, device=query.device)
    n_sentences = collector.key_membership.shape[1]
    sums = torch.zeros(heads, n_sentences, n_sentences, dtype=torch.float32, device=query.device)
    for start in range(0, length, collector.query_block):
        stop = min(start + collector.query_block, length)
        rows = stop - start
        block_query = query[0, :, start:stop].reshape(kv_heads, groups * rows, head_dim)
        scores = torch.matmul(block_query, keys[:, :, :stop]).mul_(scaling)  # eager's order
        scores = scores.view(heads, rows, stop).float()
        future = torch.ones(rows, rows, dtype=torch.bool, device=query.device).triu_(1)
        scores[:, :, start:stop].masked_fill_(future, float("-inf"))
        probabilities = torch.softmax(scores, dim=-1).to(values.dtype)  # [H, rows, stop]
        del scores
        weights = probabilities.view(kv_heads, groups * rows, stop)
        block_output = torch.matmul(weights, values[:, :stop]).view(heads, rows, head_dim)
        output[start:stop] = block_output.transpose(0, 1)
        del weights, block_output
        plan = collector.plans.get(start)
        if plan is not None:
            rows_in_plan = probabilities[:, plan.lo - start : plan.hi - start].float()
            _add_block(sums, rows_in_plan, collector.key_membership, plan)
        del probabilities
    collector.sums[module.layer_idx] = sums
    if collector.progress is not None:
        collector.progress.update()
    return output.unsqueeze(0), None


AttentionInterface.register(ATTENTION_NAME, _streamed_attention)


@contextlib.contextmanager
def _attention_implementation(model: PreTrainedModel, name: str) -> Iterator[None]:
    """Temporarily switch ``model`` to the attention implementation ``name``."""
    previous = model.config._attn_implementation
    model.set_attn_implementation(name)
    try:
        yield
    finally:
        model.set_attn_implementation(previous)


def with_oom_retry(run: Callable[[int], Result], query_block: int) -> Result:
    """Call ``run(query_block)``; on out-of-memory halve the block and retry
    (:func:`anchorflow.memory.run_with_fallbacks`); below one row it raises ``RuntimeError``."""
    result, _ = run_with_fallbacks(
        run,
        halvings(query_block),
        lambda block: log.warning("out of memory; retrying with query_block=%d", block),
    )
    return result


@torch.no_grad()
def _streamed_pass(
    model: PreTrainedModel, input_ids: torch.Tensor, spans: np.ndarray, query_block: int
) -> np.ndarray:
    """One forward pass with the streamed attention; ``[layers, heads, n, n]`` float32."""
    device = input_ids.device
    length = input_ids.shape[1]
    n_sentences = len(spans)
    membership = np.zeros((length, n_sentences), dtype=np.float32)
    for index, (start, end) in enumerate(spans):
        membership[start:end, index] = 1.0
    collector = _Collector(
        key_membership=torch.as_tensor(membership, device=device),
        query_block=query_block,
        plans=_block_plans(spans, length, query_block, device),
        progress=tqdm(total=model.config.num_hidden_layers, desc="layers", unit="layer"),
    )
    token = _ACTIVE.set(collector)
    try:
        with _attention_implementation(model, ATTENTION_NAME):
            model.base_model(input_ids=input_ids, use_cache=False)
    finally:
        _ACTIVE.reset(token)
        collector.progress.close()
    layers = model.config.num_hidden_layers
    if sorted(collector.sums) != list(range(layers)):
        raise RuntimeError(f"expected {layers} attention layers, saw {sorted(collector.sums)}")
    lengths = torch.as_tensor(spans[:, 1] - spans[:, 0], dtype=torch.float32, device=device)
    sizes = lengths[:, None] * lengths[None, :]
    stacked = torch.stack([collector.sums[layer] for layer in range(layers)]) / sizes
    return stacked.cpu().numpy().astype(np.float32)


def sentence_attention(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    token_spans: np.ndarray | list,
    query_block: int = 256,
) -> np.ndarray:
    """Sentence-averaged attention ``[layers, heads, n_sentences, n_sentences]`` float32.

    ``input_ids`` ``[1, T]`` (BOS included), ``token_spans`` ``[n_sentences, 2]`` half-open in
    model-input coordinates. One forward pass covers every head; a CUDA out-of-memory error
    retries with half the query block.
    """
    if input_ids.ndim != 2 or input_ids.shape[0] != 1:
        raise ValueError(f"input_ids must have shape [1, T], got {tuple(input_ids.shape)}")
    if query_block < 1:
        raise ValueError(f"query_block must be >= 1, got {query_block}")
    spans = check_token_spans(token_spans, input_ids.shape[1])
    input_ids = input_ids.to(model.device)
    return with_oom_retry(lambda block: _streamed_pass(model, input_ids, spans, block), query_block)


@torch.no_grad()
def token_attentions(model: PreTrainedModel, input_ids: torch.Tensor) -> list[np.ndarray]:
    """Every layer's token attention ``[heads, T, T]`` float32 (eager, ``output_attentions``)."""
    with _attention_implementation(model, "eager"):
        outputs = model(
            input_ids=input_ids.to(model.device), output_attentions=True, use_cache=False
        )
    return [layer[0].float().cpu().numpy() for layer in outputs.attentions]


def trace_attention(
    model: PreTrainedModel,
    tokenizer: Any,
    text: str,
    token_spans: np.ndarray | list,
    n_tokens: int,
    query_block: int = 256,
    proximity_ignore: int = 4,
    control_depth: bool = False,
    save_matrices: bool = False,
) -> dict[str, np.ndarray]:
    """The arrays of one trace's attention file.

    ``vertical_scores`` float32 ``[layers, heads, n_sentences]`` (``control_depth`` as given),
    the same without and with depth control (``vertical_scores_depth_off``,
    ``vertical_scores_depth_on``, for the white-box/black-box comparison), ``token_spans`` int64
    ``[n_sentences, 2]`` and, with ``save_matrices``, ``sentence_attention`` float16
    ``[layers, heads, n_sentences, n_sentences]``. ``n_tokens`` is the input length the spans
    were computed for; a different tokenisation of ``text`` is an error, not a silent shift.
    """
    input_ids = encode_text(tokenizer, text)
    if input_ids.shape[1] != n_tokens:
        raise ValueError(
            f"the text tokenises to {input_ids.shape[1]} tokens but the token spans were "
            f"computed for {n_tokens}; rebuild the token spans with this model's tokenizer"
        )
    spans = check_token_spans(token_spans, n_tokens)
    matrices = sentence_attention(model, input_ids, spans, query_block=query_block)
    by_depth = {
        depth: vertical_scores(matrices, proximity_ignore, depth).astype(np.float32)
        for depth in (False, True)
    }
    arrays = {
        "vertical_scores": by_depth[control_depth],
        "vertical_scores_depth_off": by_depth[False],
        "vertical_scores_depth_on": by_depth[True],
        "token_spans": spans,
    }
    if save_matrices:
        arrays["sentence_attention"] = matrices.astype(np.float16)
    return arrays
