"""Sentence-position patching of the residual stream (the thought-anchor hub-position test).

At the input of decoder layer ``layer``, the hidden state of every token of one sentence of the
prompt is moved towards a replacement: ``h <- (1 - strength) * h + strength * r``, with ``r``
the row's mean hidden state over its non-pad prompt tokens (``mean``) or Gaussian noise with the
patched tokens' RMS (``noise``, drawn from the row's own seed). The patch is applied once, at
prefill; later layers' keys and values of those positions carry it through the KV cache into
every decode step. A row's patch depends on its own tokens and seed only, not on the padding
or the other rows of its batch.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from anchorflow.interventions.heads import decoder_layers, stable_seed

PATCH_MODES = ("mean", "noise")


@dataclass(frozen=True)
class ResidualPatch:
    """Where and how to patch: decoder layer input ``layer``, ``mode`` and ``strength`` in
    [0, 1] (0 = no-op, 1 = full replacement)."""

    layer: int
    mode: str
    strength: float

    def __post_init__(self) -> None:
        if self.mode not in PATCH_MODES:
            raise ValueError(f"unknown patch mode {self.mode!r}; expected one of {PATCH_MODES}")
        if not 0.0 <= self.strength <= 1.0:
            raise ValueError(f"patch strength must lie in [0, 1], got {self.strength}")
        if self.layer < 0:
            raise ValueError(f"negative patch layer {self.layer}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sentence_token_mask(
    offsets: torch.Tensor, attention_mask: torch.Tensor, spans: Sequence[tuple[int, int] | None]
) -> torch.Tensor:
    """Tokens overlapping each row's character span ``[start, end)``.

    ``offsets``: ``[batch, T, 2]`` character offsets of a (left-padded) encoding;
    ``attention_mask``: ``[batch, T]``; ``spans``: one span per row (None = patch nothing).
    Returns a bool mask ``[batch, T]``. A row whose span covers no token is an error.
    """
    starts = torch.tensor([span[0] if span else 0 for span in spans])[:, None]
    ends = torch.tensor([span[1] if span else 0 for span in spans])[:, None]
    real = attention_mask.bool() & (offsets[..., 1] > offsets[..., 0])
    mask = real & (offsets[..., 0] < ends) & (offsets[..., 1] > starts)
    for row, span in enumerate(spans):
        if span is not None and not bool(mask[row].any()):
            raise ValueError(f"row {row}: the span {span} covers no token of the prompt")
    return mask


def _replacement(
    hidden: torch.Tensor, row_mask: torch.Tensor, valid: torch.Tensor, mode: str, seed: int
) -> torch.Tensor:
    """``[n_patched, hidden]`` replacement vectors of one row."""
    patched = hidden[row_mask]
    if mode == "mean":
        return hidden[valid].float().mean(0, keepdim=True).expand_as(patched).to(hidden.dtype)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    noise = torch.randn(patched.shape, generator=generator, dtype=torch.float32)
    rms = patched.float().pow(2).mean().sqrt()
    return (noise * rms).to(hidden.device, hidden.dtype)


@contextlib.contextmanager
def apply_residual_patch(
    model: nn.Module,
    patch: ResidualPatch,
    token_mask: torch.Tensor,
    attention_mask: torch.Tensor,
    seeds: Sequence[int],
) -> Iterator[None]:
    """Patch the prompt's masked tokens at the input of ``decoder_layers(model)[patch.layer]``.

    ``token_mask`` and ``attention_mask``: ``[batch, T]`` of the padded prompt; ``seeds``: one
    per row (noise). Applied on the prefill call only (a call whose sequence length is ``T``);
    the hook is always removed.
    """
    layers = decoder_layers(model)
    if patch.layer >= len(layers):
        raise ValueError(f"patch layer {patch.layer} outside the model's {len(layers)} layers")
    if token_mask.shape != attention_mask.shape or token_mask.shape[0] != len(seeds):
        raise ValueError("token mask, attention mask and seeds disagree on the batch shape")
    prompt_length = token_mask.shape[1]
    if prompt_length < 2:
        raise ValueError(
            "a patched prompt needs at least 2 tokens (prefill is told apart by length)"
        )

    def pre_hook(module, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        if patch.strength == 0.0 or hidden.shape[1] != prompt_length:
            return None
        mask = token_mask.to(hidden.device)
        valid = attention_mask.to(hidden.device).bool()
        patched = hidden.clone()
        for row, seed in enumerate(seeds):
            if not bool(mask[row].any()):
                continue
            target = _replacement(hidden[row], mask[row], valid[row], patch.mode, seed)
            current = hidden[row][mask[row]]
            patched[row, mask[row]] = current + patch.strength * (target - current)
        if args:
            return (patched, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": patched}

    handle = layers[patch.layer].register_forward_pre_hook(pre_hook, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


def choose_patch_sentences(
    scores: Sequence[float],
    lengths: Sequence[int],
    n_draws: int,
    exclude_top: int,
    length_tolerance: float,
    seed: int,
) -> tuple[int, list[int], int]:
    """The anchor and ``n_draws`` matched control sentences of one trace.

    ``scores``: receiver score per sentence (NaN = unscored); ``lengths``: characters per
    sentence. The anchor is the top-scored sentence. Controls are drawn (seeded, with
    replacement) from the scored sentences outside the top ``exclude_top`` whose length is
    within ``length_tolerance`` (relative) of the anchor's; when none is, from all of those
    outside the top. Returns ``(anchor, controls, n_matched_candidates)``.
    """
    values = np.asarray(scores, dtype=np.float64)
    if values.shape != (len(lengths),):
        raise ValueError(f"{values.shape[0]} scores for {len(lengths)} sentences")
    scored = np.flatnonzero(np.isfinite(values))
    if scored.size == 0:
        raise ValueError("no sentence has a receiver score; cannot choose an anchor")
    ranked = scored[np.argsort(-values[scored], kind="stable")]
    anchor = int(ranked[0])
    outside = [int(i) for i in ranked[max(exclude_top, 1) :]]
    if not outside:
        raise ValueError("every scored sentence is in the excluded top; no control is left")
    matched = [
        i
        for i in outside
        if abs(lengths[i] - lengths[anchor]) <= length_tolerance * lengths[anchor]
    ]
    pool = sorted(matched or outside)
    rng = random.Random(seed)
    return anchor, [rng.choice(pool) for _ in range(n_draws)], len(matched)


def choose_sentences(
    settings: Mapping[str, Any],
    seed: int,
    experiment: str,
    receiver_scores: pd.DataFrame,
    problems: Sequence[Mapping[str, Any]],
) -> tuple[dict[str, int], list[dict[str, int]], pd.DataFrame]:
    """The anchor and ``n_random_draws`` matched control sentences of each problem's trace
    (:func:`choose_patch_sentences`, seeded by ``(seed, experiment, trace)``).

    ``settings``: ``n_random_draws``, ``exclude_top``, ``length_tolerance``;
    ``receiver_scores``: ``trace, chunk_idx, receiver_score`` rows (the receivers stage's
    table); ``problems``: with their ``trace`` and ``chunks``. Returns ``(anchors {trace:
    chunk}, controls [{trace: chunk} per draw], table)``; the table has one row per chosen
    sentence (``condition`` ``anchor`` or ``control_draw{d}``).
    """
    draws = range(settings["n_random_draws"])
    anchors: dict[str, int] = {}
    controls: list[dict[str, int]] = [{} for _ in draws]
    rows = []
    for problem in problems:
        trace, chunks = problem["trace"], problem["chunks"]
        table = receiver_scores[receiver_scores["trace"] == trace]
        if table.empty:
            raise ValueError(
                f"no receiver scores for trace {trace!r}; is it in the receivers stage?"
            )
        scores = np.full(len(chunks), np.nan)
        for row in table.itertuples():
            if 0 <= int(row.chunk_idx) < len(chunks):
                scores[int(row.chunk_idx)] = row.receiver_score
        anchor, chosen, n_matched = choose_patch_sentences(
            scores,
            [len(chunk) for chunk in chunks],
            settings["n_random_draws"],
            settings["exclude_top"],
            settings["length_tolerance"],
            stable_seed(seed, experiment, trace),
        )
        anchors[trace] = anchor
        for draw, control in zip(draws, chosen, strict=True):
            controls[draw][trace] = control
        rows += [
            {
                "trace": trace,
                "condition": name,
                "chunk_idx": index,
                "receiver_score": float(scores[index]),
                "n_chars": len(chunks[index]),
                "n_matched_candidates": n_matched,
                "sentence": chunks[index],
            }
            for name, index in [("anchor", anchor)]
            + [(f"control_draw{d}", c) for d, c in zip(draws, chosen, strict=True)]
        ]
    return anchors, controls, pd.DataFrame(rows)


def patching_conditions(
    section: Mapping[str, Any],
    receiver_scores: pd.DataFrame,
    problems: Sequence[Mapping[str, Any]],
) -> tuple[dict[str, dict[str, Any]], pd.DataFrame]:
    """Conditions of the patching experiment and a table of the chosen sentences
    (:func:`choose_sentences`). Conditions: ``baseline`` (no patch), ``anchor`` and
    ``control_draw{d}``, each with ``sentences = {trace: chunk index}``.
    """
    anchors, controls, table = choose_sentences(
        section["patching"], section["seed"], "patching", receiver_scores, problems
    )
    conditions: dict[str, dict[str, Any]] = {
        "baseline": {"kind": "baseline", "sentences": {}},
        "anchor": {"kind": "anchor", "sentences": anchors},
    }
    for draw, chosen in enumerate(controls):
        conditions[f"control_draw{draw}"] = {"kind": "random", "draw": draw, "sentences": chosen}
    return conditions, table
