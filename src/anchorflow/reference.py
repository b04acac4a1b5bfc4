"""Naive reference implementations, for tests and benchmarks only (no rule calls them).

Each computes a quantity straight from its definition, the way the paper's code does, with no
shortcut: the streamed and batched versions in the stages are tested against them, and the
benchmarks measure their speed-ups against them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedModel

from anchorflow.attention import check_token_spans, token_attentions
from anchorflow.suppression.divergence import LOG_KL_EPSILON, NUCLEUS_FILL, KLSettings
from anchorflow.suppression.matrix import cut_trace


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
    input_ids: torch.Tensor,
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


def naive_sentence_attention(
    model: PreTrainedModel, input_ids: torch.Tensor, token_spans: np.ndarray | list
) -> np.ndarray:
    """The definition, as the reference computes it: a forward with ``output_attentions=True``,
    then per head a Python double loop of ``np.mean`` over token blocks.
    ``[layers, heads, n_sentences, n_sentences]`` float32."""
    spans = check_token_spans(token_spans, input_ids.shape[1])
    attentions = token_attentions(model, input_ids)
    n_sentences = len(spans)
    result = np.zeros((len(attentions), attentions[0].shape[0], n_sentences, n_sentences))
    for layer, heads in enumerate(attentions):
        for head, matrix in enumerate(heads):
            for i, (r0, r1) in enumerate(spans):
                for j, (c0, c1) in enumerate(spans):
                    result[layer, head, i, j] = np.mean(matrix[r0:r1, c0:c1])
    return result.astype(np.float32)
