"""The KL between baseline and suppressed next-token distributions (method reference §6.2, §6.3).

- ``kl_mode="full"`` is the exact full-vocabulary KL at temperature ``T``.
- ``kl_mode="nucleus"`` emulates the reference's compression exactly: per position, the smallest
  top-``k`` set with probability mass >= ``top_p`` (``k <= max_k``) after sorting, kept logits
  rounded to float16, ``-1e9`` for ids kept by only one side, renormalisation over the union.
- The arithmetic runs in float64 on the device (the reference: float32). Its inputs are the
  float32 logits (nucleus: their float16 roundings), so the result is the reference's formula
  without its float32 summation noise, which otherwise decides low-KL entries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F

LOG_KL_EPSILON = 1e-9


NO_EFFECT_LOG_KL = math.log(LOG_KL_EPSILON)


NUCLEUS_FILL = -1e9


KL_MODES = ("full", "nucleus")


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
    terms = F.kl_div(log_q, log_p, reduction="none", log_target=True)
    terms = torch.where(log_p.exp() > 0, terms, torch.zeros_like(terms))
    return terms.sum(dim=-1).clamp_min(0.0)


def full_kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """``KL(P || Q)`` over the last axis from log-probabilities
    (``torch.nn.functional.kl_div``); terms with ``p == 0`` are 0."""
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


def prepare_logits(logits: torch.Tensor, settings: KLSettings) -> torch.Tensor | Nucleus:
    if settings.mode == "nucleus":
        return compress_nucleus(logits, settings)
    return torch.log_softmax(logits.double() / settings.temperature, dim=-1)


def compare_prepared(
    baseline: torch.Tensor | Nucleus, suppressed: torch.Tensor | Nucleus, settings: KLSettings
) -> torch.Tensor:
    if isinstance(baseline, Nucleus) and isinstance(suppressed, Nucleus):
        return nucleus_kl(baseline, suppressed, settings.temperature)
    assert isinstance(baseline, torch.Tensor) and isinstance(suppressed, torch.Tensor)
    return full_kl(baseline, suppressed)


def slice_prepared(prepared: torch.Tensor | Nucleus, index: Any) -> torch.Tensor | Nucleus:
    return prepared.at(index) if isinstance(prepared, Nucleus) else prepared[index]


def concat_prepared(parts: list[torch.Tensor | Nucleus]) -> torch.Tensor | Nucleus:
    if isinstance(parts[0], Nucleus):
        return Nucleus(*(torch.cat(fields, dim=0) for fields in zip(*parts, strict=True)))
    return torch.cat(parts, dim=0)  # type: ignore[arg-type]
