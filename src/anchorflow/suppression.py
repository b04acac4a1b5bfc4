"""Attention suppression: the sentence-to-sentence KL matrix of Thought Anchors (Figure 6).

Suppressing sentence ``s`` (token span ``[a_s, b_s)``) masks its key columns before the softmax
for every query row, in every layer and head or only in a chosen set of ``(layer, head)`` pairs
(method reference §6.1, §9.5). The mask goes through a registered attention function that wraps
the model's own eager or SDPA attention, so no attention code is copied and every model family
built on transformers' ``AttentionInterface`` (Qwen2, Llama, ...) works.

Conventions (method reference §6.4, §17.2):

- ``token_kl[s, t]`` is ``KL(P_t || Q_t)`` between the baseline (P) and the suppressed (Q)
  next-token distributions at temperature ``T`` of the logits at position ``t`` (which predict
  token ``t + 1``).
- Positions ``t < a_s`` cannot see the suppressed keys, so their distribution is unchanged. They are
  not computed; ``token_kl[s, t < a_s]`` is set to the no-effect value 0, whose log is
  ``log(0 + 1e-9) = -20.72`` (:data:`NO_EFFECT_LOG_KL`).
- ``log_kl[i, s] = mean_{t in [a_i, b_i)} log(token_kl[s, t] + 1e-9)``: rows are affected sentences,
  columns suppressed sentences. The one-token shift of the reference is kept: the prediction of
  sentence ``i``'s first token (made at position ``a_i - 1``) counts towards sentence ``i - 1``.
- ``kl_mode="nucleus"`` emulates the reference's compression exactly (§6.2, §6.3): per position,
  the smallest top-``k`` set with probability mass >= ``top_p`` (``k <= max_k``) after sorting,
  kept logits rounded to float16, ``-1e9`` for ids kept by only one side, renormalisation over
  the union.
  ``kl_mode="full"`` is the exact full-vocabulary KL.
- The KL arithmetic runs in float64 on the device (the reference: float32). Its inputs are the
  float32 logits (nucleus: their float16 roundings), so the result is the reference's formula
  without its float32 summation noise, which otherwise decides low-KL entries.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch
from transformers import AttentionInterface, DynamicCache
from transformers.masking_utils import AttentionMaskInterface, eager_mask
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from anchorflow.models import encode_text

LOG_KL_EPSILON = 1e-9
NO_EFFECT_LOG_KL = math.log(LOG_KL_EPSILON)
NUCLEUS_FILL = -1e9
KL_MODES = ("full", "nucleus")
SUPPRESSION_IMPLEMENTATIONS = {
    "eager": "anchorflow_suppression_eager",
    "sdpa": "anchorflow_suppression_sdpa",
}

log = logging.getLogger(__name__)

HeadSelection = dict[int, torch.Tensor]
"""Heads to suppress: layer index -> bool ``[num_attention_heads]``; absent layers are untouched."""


# --------------------------------------------------------------------------- attention function


def _stock_attention(module: torch.nn.Module, implementation: str) -> Callable[..., Any]:
    if implementation == "sdpa":
        return ALL_ATTENTION_FUNCTIONS["sdpa"]
    eager = getattr(sys.modules[type(module).__module__], "eager_attention_forward", None)
    if eager is None:
        raise TypeError(
            f"{type(module).__name__} has no module-level eager_attention_forward to wrap; "
            "load the model with attn_implementation='sdpa'"
        )
    return eager


def suppression_mask(
    attention_mask: torch.Tensor,
    suppressed_keys: torch.Tensor,
    heads: torch.Tensor | None,
    key_length: int,
) -> torch.Tensor:
    """The additive mask with the suppressed key columns set to the dtype's minimum.

    ``attention_mask`` float ``[batch, 1, queries, >= keys]``; ``suppressed_keys`` bool
    ``[batch, >= keys]``; ``heads`` bool ``[heads]`` or None for all heads. Returns
    ``[batch, 1 or heads, queries, keys]``.
    """
    blocked = suppressed_keys[:, None, None, :key_length]
    if heads is not None:
        blocked = blocked & heads[None, :, None, None]
    minimum = torch.finfo(attention_mask.dtype).min
    return torch.where(blocked, minimum, attention_mask[..., :key_length])


def query_blocks(n_queries: int, block: int) -> list[slice]:
    """Row slices of at most ``block`` query rows, except that a one-row remainder joins the
    block before it: one row goes through a matrix-vector kernel whose rounding differs."""
    firsts = list(range(0, n_queries, block)) or [0]
    if len(firsts) > 1 and n_queries - firsts[-1] == 1:
        firsts.pop()
    return [slice(first, end) for first, end in zip(firsts, [*firsts[1:], n_queries], strict=True)]


def _suppressing_attention(implementation: str) -> Callable[..., Any]:
    def attention(
        module: torch.nn.Module,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attention_mask: torch.Tensor | None,
        scaling: float | None = None,
        dropout: float = 0.0,
        suppressed_keys: torch.Tensor | None = None,
        suppressed_heads: HeadSelection | None = None,
        query_block: int | None = None,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        stock = _stock_attention(module, implementation)
        layer_heads = None if suppressed_heads is None else suppressed_heads.get(module.layer_idx)
        suppress = suppressed_keys is not None and (
            suppressed_heads is None or layer_heads is not None
        )
        if suppress and attention_mask is None:
            raise ValueError("attention suppression needs a materialised attention mask")
        n_queries, n_keys = query.shape[-2], key.shape[-2]
        outputs = []
        for rows in query_blocks(n_queries, query_block or n_queries):
            mask = None if attention_mask is None else attention_mask[..., rows, :n_keys]
            if suppress:
                mask = suppression_mask(mask, suppressed_keys, layer_heads, n_keys)
            outputs.append(
                stock(
                    module,
                    query[:, :, rows],
                    key,
                    value,
                    mask,
                    scaling=scaling,
                    dropout=dropout,
                    **kwargs,
                )
            )
        if len(outputs) == 1:
            return outputs[0]
        return torch.cat([output for output, _ in outputs], dim=1), None

    return attention


def register_suppression_attention() -> None:
    """Register the suppressing wrappers of eager and SDPA attention (idempotent).

    Both use transformers' eager mask (a materialised float mask), which the wrappers edit.
    """
    for stock, name in SUPPRESSION_IMPLEMENTATIONS.items():
        AttentionInterface.register(name, _suppressing_attention(stock))
        AttentionMaskInterface.register(name, eager_mask)


@contextlib.contextmanager
def suppression_attention(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Switch ``model`` to the suppressing wrapper of its own attention for the block.

    Inside, ``model(..., suppressed_keys=bool [batch, keys], suppressed_heads=HeadSelection)``
    suppresses; without those arguments the forward is the stock one. ``query_block=B`` computes
    attention about ``B`` query rows at a time (:func:`query_blocks`) against all keys: the same
    arithmetic per row, bit for bit on CPU for blocks of two rows or more, with
    ``[batch, heads, B + 1, keys]`` scores at most.
    """
    original = model.config._attn_implementation
    if original not in SUPPRESSION_IMPLEMENTATIONS:
        raise ValueError(
            f"attention suppression wraps eager or sdpa attention, not {original!r}; "
            "load the model with attn_implementation='eager' or 'sdpa'"
        )
    layer_types = getattr(model.config, "layer_types", None) or []
    if any(kind != "full_attention" for kind in layer_types):
        raise ValueError("attention suppression supports full-attention layers only")
    register_suppression_attention()
    model.set_attn_implementation(SUPPRESSION_IMPLEMENTATIONS[original])
    try:
        yield model
    finally:
        model.set_attn_implementation(original)


def head_selection(
    pairs: Sequence[tuple[int, int]], num_layers: int, num_heads: int, device: torch.device | str
) -> HeadSelection:
    """A :data:`HeadSelection` from ``(layer, head)`` pairs; out-of-range pairs raise."""
    selection: HeadSelection = {}
    for layer, head in pairs:
        if not (0 <= layer < num_layers and 0 <= head < num_heads):
            raise ValueError(f"head ({layer}, {head}) outside a {num_layers}x{num_heads} model")
        mask = selection.setdefault(
            int(layer), torch.zeros(num_heads, dtype=torch.bool, device=device)
        )
        mask[int(head)] = True
    return selection


# --------------------------------------------------------------------------- KL


@dataclass(frozen=True)
class KLSettings:
    """How next-token distributions are compared (reference: nucleus, 0.6, 0.9999, 100)."""

    mode: str = "nucleus"
    temperature: float = 0.6
    top_p: float = 0.9999
    max_k: int = 100

    def __post_init__(self) -> None:
        if self.mode not in KL_MODES:
            raise ValueError(f"kl mode must be one of {KL_MODES}, not {self.mode!r}")
        if self.temperature <= 0 or not 0 < self.top_p <= 1 or self.max_k < 1:
            raise ValueError(f"invalid KL settings {self}")


class Nucleus(NamedTuple):
    """Nucleus-compressed logits, ``[..., max_k]`` each: token ids, float16-rounded raw logits
    (as float64), and which of the ``max_k`` slots are kept."""

    ids: torch.Tensor
    logits: torch.Tensor
    keep: torch.Tensor

    def at(self, index: Any) -> Nucleus:
        return Nucleus(self.ids[index], self.logits[index], self.keep[index])


def compress_nucleus(logits: torch.Tensor, settings: KLSettings) -> Nucleus:
    """Emulate ``compress_logits_top_p``: ``logits [..., V]`` -> :class:`Nucleus` ``[..., max_k]``.

    ``k`` is the smallest count whose sorted probability mass (softmax at the temperature)
    reaches ``top_p``, capped at ``max_k`` and at least 1. As in the reference
    (``torch.searchsorted`` on the float32 cumulative sum), ``top_p`` is compared in float32.
    """
    logits = logits.float()
    probs = torch.softmax(logits / settings.temperature, dim=-1)
    top_probs, ids = torch.topk(probs, min(settings.max_k, probs.shape[-1]), dim=-1, sorted=True)
    below = (torch.cumsum(top_probs, dim=-1) < settings.top_p).sum(dim=-1, keepdim=True)
    kept = torch.clamp(below + 1, min=1, max=settings.max_k)
    keep = torch.arange(ids.shape[-1], device=ids.device) < kept
    kept_logits = torch.gather(logits, -1, ids).to(torch.float16).double()
    return Nucleus(ids, kept_logits, keep)


def _kl_from_log_probs(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    probs = log_p.exp()
    terms = torch.where(probs > 0, probs * (log_p - log_q), torch.zeros_like(probs))
    return terms.sum(dim=-1).clamp_min(0.0)


def full_kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """``KL(P || Q)`` over the last axis from log-probabilities; terms with ``p == 0`` are 0."""
    return _kl_from_log_probs(log_p, log_q)


def kl_from_logits(
    baseline_logits: torch.Tensor, suppressed_logits: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """Full-vocabulary ``KL(softmax(baseline / T) || softmax(suppressed / T))``, ``[...]``."""
    log_p = torch.log_softmax(baseline_logits.double() / temperature, dim=-1)
    log_q = torch.log_softmax(suppressed_logits.double() / temperature, dim=-1)
    return full_kl(log_p, log_q)


def _lookup(table: Nucleus, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For ``ids [..., K]``: whether ``table`` keeps each id, and its kept logit there
    (meaningless where not kept). A sorted search per row, O(K log K)."""
    order = torch.argsort(table.ids, dim=-1)
    sorted_ids = torch.gather(table.ids, -1, order)
    found = torch.searchsorted(sorted_ids, ids).clamp_max(ids.shape[-1] - 1)
    slot = torch.gather(order, -1, found)
    kept = (torch.gather(table.ids, -1, slot) == ids) & torch.gather(table.keep, -1, slot)
    return kept, torch.gather(table.logits, -1, slot)


def nucleus_kl(baseline: Nucleus, suppressed: Nucleus, temperature: float) -> torch.Tensor:
    """Emulate ``calculate_kl_divergence_sparse``: KL over the union of the kept ids, ids kept
    by only one side filled with ``-1e9``, each side renormalised over the union. ``[...]``.

    In float64 a ``-1e9`` logit at temperature 0.6 has probability exactly 0, so the union
    reduces to: ``p`` is the softmax over the baseline's kept ids; ``log q`` of a baseline id is
    its suppressed log-probability where the suppressed side keeps it, else the fill's
    ``(-1e9) / T - logsumexp_Q``; ids kept only by the suppressed side have ``p = 0``.
    """
    shape = torch.broadcast_shapes(baseline.ids.shape, suppressed.ids.shape)
    baseline = Nucleus(*(values.expand(shape) for values in baseline))
    suppressed = Nucleus(*(values.expand(shape).contiguous() for values in suppressed))
    in_suppressed, suppressed_at_baseline = _lookup(suppressed, baseline.ids.contiguous())
    absent = torch.full_like(suppressed.logits, -math.inf)
    log_p = torch.log_softmax(
        torch.where(baseline.keep, baseline.logits, absent) / temperature, dim=-1
    )
    normaliser_q = torch.logsumexp(
        torch.where(suppressed.keep, suppressed.logits, absent) / temperature, dim=-1, keepdim=True
    )
    log_q = torch.where(in_suppressed, suppressed_at_baseline, NUCLEUS_FILL) / temperature
    return _kl_from_log_probs(log_p, log_q - normaliser_q)


def _prepare(logits: torch.Tensor, settings: KLSettings) -> torch.Tensor | Nucleus:
    if settings.mode == "nucleus":
        return compress_nucleus(logits, settings)
    return torch.log_softmax(logits.double() / settings.temperature, dim=-1)


def _compare(
    baseline: torch.Tensor | Nucleus, suppressed: torch.Tensor | Nucleus, settings: KLSettings
) -> torch.Tensor:
    if isinstance(baseline, Nucleus) and isinstance(suppressed, Nucleus):
        return nucleus_kl(baseline, suppressed, settings.temperature)
    assert isinstance(baseline, torch.Tensor) and isinstance(suppressed, torch.Tensor)
    return full_kl(baseline, suppressed)


def _slice(prepared: torch.Tensor | Nucleus, index: Any) -> torch.Tensor | Nucleus:
    return prepared.at(index) if isinstance(prepared, Nucleus) else prepared[index]


def _concat(parts: list[torch.Tensor | Nucleus]) -> torch.Tensor | Nucleus:
    if isinstance(parts[0], Nucleus):
        return Nucleus(*(torch.cat(fields, dim=0) for fields in zip(*parts, strict=True)))
    return torch.cat(parts, dim=0)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the matrix


def clip_spans(token_spans: np.ndarray, n_tokens: int) -> np.ndarray:
    """Token spans ``[n, 2]`` clipped to the first ``n_tokens`` positions (empty when beyond)."""
    spans = np.asarray(token_spans, dtype=np.int64)
    if spans.ndim != 2 or spans.shape[1] != 2:
        raise ValueError(f"token spans must have shape [n, 2], not {spans.shape}")
    if (spans[:, 0] > spans[:, 1]).any():
        raise ValueError("token spans must satisfy start <= end")
    return np.minimum(spans, n_tokens)


def cut_trace(
    input_ids: Sequence[int] | torch.Tensor,
    token_spans: np.ndarray,
    max_tokens: int | None,
    device: torch.device | str,
) -> tuple[torch.Tensor, np.ndarray]:
    """Ids ``[T']`` (the first ``max_tokens``, all when None) on ``device`` and the spans
    ``[n, 2]`` clipped to them."""
    ids = torch.as_tensor(input_ids, dtype=torch.long).flatten()
    n_tokens = len(ids) if max_tokens is None else min(len(ids), max_tokens)
    return ids[:n_tokens].to(device), clip_spans(token_spans, n_tokens)


def sentence_log_kl(token_kl: torch.Tensor, spans: np.ndarray) -> torch.Tensor:
    """One segment mean: ``token_kl [m, T]`` -> ``[n, m]`` with entry ``[i, s]`` the mean over
    ``t in [a_i, b_i)`` of ``log(token_kl[s, t] + 1e-9)`` (float64; NaN for empty spans or NaN
    rows of ``token_kl``)."""
    n_tokens = token_kl.shape[1]
    positions = torch.arange(n_tokens, device=token_kl.device)
    starts = torch.as_tensor(spans[:, 0], device=token_kl.device)
    ends = torch.as_tensor(spans[:, 1], device=token_kl.device)
    membership = ((positions[:, None] >= starts) & (positions[:, None] < ends)).double()
    log_token_kl = torch.log(token_kl.double() + LOG_KL_EPSILON)
    return (log_token_kl @ membership / membership.sum(dim=0)).T


@dataclass
class SuppressionResult:
    """``log_kl`` float32 ``[n, n]`` (rows affected, columns suppressed; NaN columns for
    sentences not suppressed, NaN rows for sentences beyond the token cut); ``token_kl`` float32
    ``[n, T]`` (NaN rows for sentences not suppressed); ``spans`` int ``[n, 2]`` as used;
    ``suppressed`` bool ``[n]``; ``batch_size`` and ``query_block`` as last used (after
    out-of-memory halvings)."""

    log_kl: np.ndarray
    token_kl: np.ndarray
    spans: np.ndarray
    n_tokens: int
    batch_size: int
    query_block: int
    n_oom_retries: int
    suppressed: np.ndarray


def _forward_suppressed(
    decoder: torch.nn.Module,
    input_ids: torch.Tensor,
    prefix: list[tuple[torch.Tensor, torch.Tensor]],
    suppressed_keys: torch.Tensor,
    heads: HeadSelection | None,
    start: int,
    query_block: int | None,
) -> torch.Tensor:
    """Hidden states ``[batch, T - start, hidden]`` of positions ``>= start`` with the
    baseline's cached prefix ``[0, start)`` copied per batch element."""
    batch = suppressed_keys.shape[0]
    cache = DynamicCache(
        ddp_cache_data=[
            (
                keys[:, :, :start].expand(batch, -1, -1, -1),
                values[:, :, :start].expand(batch, -1, -1, -1),
            )
            for keys, values in prefix
        ]
    )
    output = decoder(
        input_ids=input_ids[None, start:].expand(batch, -1),
        past_key_values=cache,
        use_cache=True,
        suppressed_keys=suppressed_keys,
        suppressed_heads=heads,
        query_block=query_block,
    )
    return output.last_hidden_state


def _suppressed_token_kl(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    prefix: list[tuple[torch.Tensor, torch.Tensor]],
    baseline: torch.Tensor | Nucleus,
    spans: np.ndarray,
    settings: KLSettings,
    heads: HeadSelection | None,
    position_chunk: int,
    query_block: int | None,
) -> torch.Tensor:
    """``token_kl`` rows ``[batch, T]`` for the suppressed spans ``[batch, 2]``."""
    n_tokens = input_ids.shape[0]
    device = input_ids.device
    positions = torch.arange(n_tokens, device=device)
    starts = torch.as_tensor(spans[:, 0], device=device)
    ends = torch.as_tensor(spans[:, 1], device=device)
    suppressed_keys = (positions >= starts[:, None]) & (positions < ends[:, None])
    start = int(spans[:, 0].min())
    hidden = _forward_suppressed(
        model.base_model, input_ids, prefix, suppressed_keys, heads, start, query_block
    )
    head = model.get_output_embeddings()
    rows = torch.zeros((len(spans), n_tokens), dtype=torch.float32, device=device)
    for offset in range(0, n_tokens - start, position_chunk):
        window = slice(start + offset, min(start + offset + position_chunk, n_tokens))
        suppressed = _prepare(head(hidden[:, offset : offset + position_chunk]), settings)
        reference = _slice(baseline, (None, window))
        rows[:, window] = _compare(reference, suppressed, settings)
    if not torch.isfinite(rows).all():
        raise FloatingPointError("non-finite KL under suppression")
    rows[positions[None, :] < starts[:, None]] = 0.0
    return rows


def suppression_matrix(
    model: torch.nn.Module,
    input_ids: Sequence[int] | torch.Tensor,
    token_spans: np.ndarray,
    settings: KLSettings,
    *,
    heads: HeadSelection | None = None,
    sentences: Sequence[int] | None = None,
    batch_size: int = 8,
    max_tokens: int | None = None,
    position_chunk: int = 128,
    query_block: int = 128,
    progress: Callable[[int], None] | None = None,
) -> SuppressionResult:
    """The suppression matrix of one trace.

    ``input_ids [T]`` in model-input coordinates (BOS = 0); ``token_spans [n, 2]`` half-open;
    ``sentences`` to suppress (default all); ``max_tokens`` cuts the sequence (the reference
    clips spans the same way). Sentences are suppressed ``batch_size`` at a time, in order of
    their start, attention computed ``query_block`` rows at a time (exact: see
    :func:`suppression_attention`). A CUDA out-of-memory error halves the batch and retries; at
    one sentence per batch it halves the query block.
    """
    if batch_size < 1 or query_block < 1:
        raise ValueError(
            f"batch_size and query_block must be >= 1, not {batch_size}, {query_block}"
        )
    if getattr(model.config, "final_logit_softcapping", None):
        raise ValueError("logit soft-capping is not supported")
    device = next(model.parameters()).device
    ids, spans = cut_trace(input_ids, token_spans, max_tokens, device)
    n_tokens = len(ids)
    n_sentences = len(spans)
    chosen = range(n_sentences) if sentences is None else sorted(set(sentences))
    todo = sorted((s for s in chosen if spans[s, 0] < spans[s, 1]), key=lambda s: spans[s, 0])
    if any(spans[s, 0] < 1 for s in todo):
        raise ValueError("a suppressed sentence starts at token 0; token 0 must be BOS")
    token_kl = torch.full((n_sentences, n_tokens), math.nan, dtype=torch.float32, device=device)
    retries = 0
    head = model.get_output_embeddings()
    with torch.inference_mode(), suppression_attention(model):
        output = model.base_model(input_ids=ids[None], use_cache=True, query_block=query_block)
        prefix = [(layer.keys, layer.values) for layer in output.past_key_values.layers]
        hidden = output.last_hidden_state[0]
        baseline = _concat(
            [
                _prepare(head(hidden[offset : offset + position_chunk]), settings)
                for offset in range(0, n_tokens, position_chunk)
            ]
        )
        while todo:
            batch = todo[:batch_size]
            try:
                rows = _suppressed_token_kl(
                    model,
                    ids,
                    prefix,
                    baseline,
                    spans[batch],
                    settings,
                    heads,
                    position_chunk,
                    query_block,
                )
            except torch.OutOfMemoryError:
                if batch_size == 1 and query_block == 1:
                    raise
                if batch_size > 1:
                    batch_size //= 2
                else:
                    query_block //= 2
                retries += 1
                log.warning(
                    "out of memory; retrying with %d suppressed sentences, query block %d",
                    batch_size,
                    query_block,
                )
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                continue
            token_kl[batch] = rows
            todo = todo[len(batch) :]
            if progress is not None:
                progress(len(batch))
    log_kl = sentence_log_kl(token_kl, spans)
    return SuppressionResult(
        log_kl=log_kl.float().cpu().numpy(),
        token_kl=token_kl.cpu().numpy(),
        spans=spans,
        n_tokens=n_tokens,
        batch_size=batch_size,
        query_block=query_block,
        n_oom_retries=retries,
        suppressed=~torch.isnan(token_kl[:, 0]).cpu().numpy(),
    )


# --------------------------------------------------------------------------- reference loop


def reference_nucleus(logits: torch.Tensor, settings: KLSettings) -> dict[int, float]:
    """``compress_logits_top_p`` for one position, literally: ``logits [V]`` -> ``{id: logit}``
    with the kept raw logits rounded to float16."""
    probs = torch.softmax(logits.float() / settings.temperature, dim=-1)
    sorted_probs, order = torch.sort(probs, descending=True)
    cumulative = torch.cumsum(sorted_probs, dim=0)
    found = int(torch.searchsorted(cumulative, settings.top_p, right=False))
    kept = max(min(found + 1, settings.max_k), 1)
    return {int(order[j]): float(np.float16(logits[order[j]].item())) for j in range(kept)}


def reference_sparse_kl(
    baseline: dict[int, float], suppressed: dict[int, float], temperature: float
) -> float:
    """``calculate_kl_divergence_sparse``, literally: KL over the union of two kept-id dicts."""
    union = sorted(set(baseline) | set(suppressed))
    baseline_logits = torch.full((len(union),), NUCLEUS_FILL, dtype=torch.float64)
    suppressed_logits = torch.full((len(union),), NUCLEUS_FILL, dtype=torch.float64)
    for slot, token in enumerate(union):
        if token in baseline:
            baseline_logits[slot] = baseline[token]
        if token in suppressed:
            suppressed_logits[slot] = suppressed[token]
    log_p = torch.log_softmax(baseline_logits / temperature, dim=0)
    log_q = torch.log_softmax(suppressed_logits / temperature, dim=0)
    probs = log_p.exp()
    terms = torch.where(probs > 0, probs * (log_p - log_q), torch.zeros_like(probs))
    return max(float(terms.sum()), 0.0)


def reference_full_kl(
    baseline: torch.Tensor, suppressed: torch.Tensor, temperature: float
) -> float:
    """Full-vocabulary KL of one position, ``[V]`` logits each."""
    log_p = torch.log_softmax(baseline.double() / temperature, dim=0)
    log_q = torch.log_softmax(suppressed.double() / temperature, dim=0)
    probs = log_p.exp()
    return max(float(torch.where(probs > 0, probs * (log_p - log_q), 0.0).sum()), 0.0)


def reference_suppression_matrix(
    model: torch.nn.Module,
    input_ids: Sequence[int] | torch.Tensor,
    token_spans: np.ndarray,
    settings: KLSettings,
    max_tokens: int | None = None,
) -> np.ndarray:
    """The reference's loop (§6.4) without any shortcut, for tests and benchmarks: n + 1 full
    forward passes with a materialised 4D additive mask (causal, plus the suppressed columns
    for every query row, all layers and heads), logits to the CPU, KL position by position and
    sentence means in Python. Returns float64 ``[n, n]`` (rows affected, columns suppressed)."""
    ids, spans = cut_trace(input_ids, token_spans, max_tokens, next(model.parameters()).device)
    n_tokens = len(ids)
    dtype = next(model.parameters()).dtype

    def logits_with(columns: tuple[int, int] | None) -> torch.Tensor:
        allowed = torch.tril(torch.ones(n_tokens, n_tokens, dtype=torch.bool))
        if columns is not None:
            allowed[:, columns[0] : columns[1]] = False
        mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)
        mask = mask[None, None]
        with torch.inference_mode():
            logits = model(input_ids=ids[None], attention_mask=mask.to(ids.device)).logits
        return logits[0].float().cpu()

    def per_position(logits: torch.Tensor) -> list[Any]:
        if settings.mode == "nucleus":
            return [reference_nucleus(logits[t], settings) for t in range(n_tokens)]
        return [logits[t] for t in range(n_tokens)]

    def kl(baseline: Any, suppressed: Any) -> float:
        if settings.mode == "nucleus":
            return reference_sparse_kl(baseline, suppressed, settings.temperature)
        return reference_full_kl(baseline, suppressed, settings.temperature)

    baseline = per_position(logits_with(None))
    matrix = np.full((len(spans), len(spans)), np.nan)
    for column, (start, end) in enumerate(spans):
        if start >= end:
            continue
        suppressed = per_position(logits_with((int(start), int(end))))
        log_kl = [
            math.log(kl(baseline[t], suppressed[t]) + LOG_KL_EPSILON) for t in range(n_tokens)
        ]
        for row, (row_start, row_end) in enumerate(spans):
            if row_start < row_end:
                matrix[row, column] = float(np.mean(log_kl[row_start:row_end]))
    return matrix


# --------------------------------------------------------------------------- rule helpers


def suppression_heads(
    model: torch.nn.Module, heads: str, receiver_heads: pd.DataFrame | None
) -> HeadSelection | None:
    """``heads = "all"`` -> None (every head); ``"receivers"`` -> the ``(layer, head)`` rows of a
    ``receiver_heads.tsv`` frame."""
    if heads == "all":
        return None
    if receiver_heads is None or receiver_heads.empty:
        raise ValueError("heads 'receivers' needs a non-empty receiver_heads.tsv")
    pairs = list(zip(receiver_heads["layer"], receiver_heads["head"], strict=True))
    config = model.config
    device = next(model.parameters()).device
    return head_selection(pairs, config.num_hidden_layers, config.num_attention_heads, device)


def extreme_sentences(receiver_score: np.ndarray, usable: np.ndarray) -> dict[str, int]:
    """The sentences with the highest and lowest finite receiver score among ``usable [n]``."""
    candidates = np.flatnonzero(usable & np.isfinite(receiver_score))
    if len(candidates) < 2:
        raise ValueError("fewer than two sentences with a finite receiver score")
    order = candidates[np.argsort(receiver_score[candidates], kind="stable")]
    return {"highest": int(order[-1]), "lowest": int(order[0])}


def trace_inputs(
    tokenizer: Any, record: dict[str, Any], tokens: dict[str, Any]
) -> tuple[torch.Tensor, np.ndarray]:
    """A trace's token ids ``[T]`` and token spans ``[n, 2]`` from its record and token-spans
    file; the ids must number the file's ``n_tokens``."""
    ids = encode_text(tokenizer, record["full_cot"])[0]
    if len(ids) != tokens["n_tokens"]:
        raise ValueError(
            f"the tokenizer gives {len(ids)} tokens for {record['trace']} but the token-spans "
            f"file has {tokens['n_tokens']}; the spans were made with another tokenizer"
        )
    return ids, np.asarray(tokens["token_spans"], dtype=np.int64)


def result_arrays(result: SuppressionResult) -> dict[str, np.ndarray]:
    """The arrays of a suppression ``.npz``."""
    return {
        "log_kl": result.log_kl.astype(np.float32),
        "token_kl": result.token_kl.astype(np.float32),
        "token_spans": result.spans.astype(np.int64),
        "suppressed": result.suppressed.astype(bool),
    }


CONVENTIONS = {
    "rows": "affected sentence i",
    "columns": "suppressed sentence s",
    "log_kl": "mean over t in [a_i, b_i) of log(token_kl[s, t] + 1e-9)",
    "token_kl": "KL(baseline || suppressed) of the logits at position t (predicting token t+1)",
    "no_effect": "token_kl[s, t < a_s] = 0 (not computed), log = log(1e-9) = -20.723",
    "nan": "columns of sentences not suppressed, rows of sentences beyond the token cut",
}
