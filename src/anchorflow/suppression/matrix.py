"""The sentence-to-sentence KL matrix of Thought Anchors (Figure 6; method reference §6.4, §17.2).

- ``token_kl[s, t]`` is ``KL(P_t || Q_t)`` between the baseline (P) and the suppressed (Q)
  next-token distributions at temperature ``T`` of the logits at position ``t`` (which predict
  token ``t + 1``), with sentence ``s`` suppressed (:mod:`anchorflow.suppression.attention`) and
  the KL of :mod:`anchorflow.suppression.divergence`.
- Positions ``t < a_s`` cannot see the suppressed keys, so their distribution is unchanged. They are
  not computed; ``token_kl[s, t < a_s]`` is set to the no-effect value 0, whose log is
  ``log(0 + 1e-9) = -20.72`` (:data:`NO_EFFECT_LOG_KL`).
- ``log_kl[i, s] = mean_{t in [a_i, b_i)} log(token_kl[s, t] + 1e-9)``: rows are affected sentences,
  columns suppressed sentences. The one-token shift of the reference is kept: the prediction of
  sentence ``i``'s first token (made at position ``a_i - 1``) counts towards sentence ``i - 1``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from transformers import DynamicCache

from anchorflow.memory import halvings, run_with_fallbacks
from anchorflow.models.loading import encode_text
from anchorflow.suppression.attention import HeadSelection, head_selection, suppression_attention
from anchorflow.suppression.divergence import (
    LOG_KL_EPSILON,
    KLSettings,
    Nucleus,
    compare_prepared,
    concat_prepared,
    prepare_logits,
    slice_prepared,
)

log = logging.getLogger(__name__)


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
        suppressed = prepare_logits(head(hidden[:, offset : offset + position_chunk]), settings)
        reference = slice_prepared(baseline, (None, window))
        rows[:, window] = compare_prepared(reference, suppressed, settings)
    if not torch.isfinite(rows).all():
        raise FloatingPointError("non-finite KL under suppression")
    rows[positions[None, :] < starts[:, None]] = 0.0
    return rows


def oom_fallbacks(batch_size: int, query_block: int) -> list[tuple[int, int]]:
    """The ``(batch_size, query_block)`` settings out-of-memory errors step through, first the
    given ones: the batch halves down to 1 sentence, then the query block down to 1 row."""
    return [(batch, query_block) for batch in halvings(batch_size)] + [
        (1, block) for block in halvings(query_block)[1:]
    ]


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
    :func:`suppression_attention`). An out-of-memory error steps to the next of
    :func:`oom_fallbacks` (:func:`anchorflow.memory.run_with_fallbacks`; the sentences already
    done are kept); past the last it raises ``RuntimeError``.
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

    def suppress_remaining(setting: tuple[int, int]) -> None:
        nonlocal todo
        batch_size, query_block = setting
        while todo:
            batch = todo[:batch_size]
            token_kl[batch] = _suppressed_token_kl(
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
            todo = todo[len(batch) :]
            if progress is not None:
                progress(len(batch))

    def log_fallback(setting: tuple[int, int]) -> None:
        log.warning(
            "out of memory; retrying with %d suppressed sentences, query block %d", *setting
        )

    head = model.get_output_embeddings()
    with torch.inference_mode(), suppression_attention(model):
        output = model.base_model(input_ids=ids[None], use_cache=True, query_block=query_block)
        prefix = [(layer.keys, layer.values) for layer in output.past_key_values.layers]
        hidden = output.last_hidden_state[0]
        baseline = concat_prepared(
            [
                prepare_logits(head(hidden[offset : offset + position_chunk]), settings)
                for offset in range(0, n_tokens, position_chunk)
            ]
        )
        fallbacks = oom_fallbacks(batch_size, query_block)
        _, attempt = run_with_fallbacks(suppress_remaining, fallbacks, log_fallback)
    log_kl = sentence_log_kl(token_kl, spans)
    return SuppressionResult(
        log_kl=log_kl.float().cpu().numpy(),
        token_kl=token_kl.cpu().numpy(),
        spans=spans,
        n_tokens=n_tokens,
        batch_size=fallbacks[attempt][0],
        query_block=fallbacks[attempt][1],
        n_oom_retries=attempt,
        suppressed=~torch.isnan(token_kl[:, 0]).cpu().numpy(),
    )


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
