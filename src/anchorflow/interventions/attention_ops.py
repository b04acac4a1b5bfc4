"""Attention-level interventions: edits of chosen heads' attention weights during generation
(docs/METHODS.md "Attention interventions").

An :class:`AttentionOp` edits the weights ``W`` (``[batch, heads, queries, keys]``) of chosen
heads, for every query row, at prefill and at every cached decode step:

- ``scale_to_span`` (``scale = s``): the logits of the span's keys get ``+ log s`` before the
  softmax, i.e. their weights are multiplied by ``s`` and the row renormalised; ``s = 0`` masks
  them (the suppression stage's masked attention), ``s > 1`` amplifies attention to the span.
- ``pattern``: ``uniform`` (equal weight on every causal, unpadded key), ``previous`` (all weight
  on the latest unpadded key before the query; the first token attends to itself) or ``hub``
  (``W' = (1 - f) W + f W_span / m_span``: a fraction ``f`` moves to the span, spread as the head
  spreads its own weight there, the rest kept in proportion).
- ``reroute``: the mass ``m_A`` on span A moves onto span B (B's tokens outside A), in proportion
  to the head's weights on B.

A row with nothing to edit (no span, the span not yet visible, every key in a suppressed span)
keeps its weights. The op goes through a registered attention function that wraps the model's
own eager or SDPA attention: the stock function computes every head, then for the targeted heads
``W`` and ``W'`` are computed explicitly in float32 from the same query, key, scaling and mask,
and ``(W' - W) V`` is added to their output. Untargeted heads are the stock output bit for bit,
and an identity edit (``s = 1``, ``f = 0``, ``A = B``) adds exactly zero.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from anchorflow.models.attention_wrappers import stock_attention, wrapped_attention

OPS = ("scale_to_span", "pattern", "reroute")
PATTERNS = ("uniform", "previous", "hub")
EDIT_IMPLEMENTATIONS = {"eager": "anchorflow_edit_eager", "sdpa": "anchorflow_edit_sdpa"}
QUERY_BLOCK = 256


@dataclass(frozen=True)
class AttentionOp:
    """One attention edit on ``heads`` (``(layer, head)`` pairs) and every head of ``layers``.

    ``scale``: the factor of ``scale_to_span``; ``pattern`` and ``fraction`` (hub only): the
    ``pattern`` op's target pattern.
    """

    op: str
    heads: tuple[tuple[int, int], ...] = ()
    layers: tuple[int, ...] = ()
    scale: float | None = None
    pattern: str | None = None
    fraction: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "heads", tuple(sorted({(int(a), int(b)) for a, b in self.heads})))
        object.__setattr__(self, "layers", tuple(sorted({int(layer) for layer in self.layers})))
        if self.op not in OPS:
            raise ValueError(f"unknown attention op {self.op!r}; expected one of {OPS}")
        if not self.heads and not self.layers:
            raise ValueError(f"attention op {self.op!r} names no heads and no layers")
        if any(min(pair) < 0 for pair in self.heads) or any(x < 0 for x in self.layers):
            raise ValueError(f"negative layer or head in {self}")
        if (self.op == "scale_to_span") != (self.scale is not None):
            raise ValueError(f"a scale is given with, and only with, scale_to_span: {self}")
        if self.scale is not None and not (math.isfinite(self.scale) and self.scale >= 0):
            raise ValueError(f"scale_to_span needs a finite scale >= 0, got {self.scale}")
        if (self.op == "pattern") != (self.pattern is not None):
            raise ValueError(f"a pattern is given with, and only with, op 'pattern': {self}")
        if self.pattern is not None and self.pattern not in PATTERNS:
            raise ValueError(f"unknown pattern {self.pattern!r}; expected one of {PATTERNS}")
        if (self.pattern == "hub") != (self.fraction is not None):
            raise ValueError(f"a fraction is given with, and only with, pattern 'hub': {self}")
        if self.fraction is not None and not 0.0 <= self.fraction <= 1.0:
            raise ValueError(f"the hub fraction must lie in [0, 1], got {self.fraction}")

    @property
    def needs_span(self) -> bool:
        """Whether each row needs a key span (the span scaled, the hub, or A of a reroute)."""
        return self.op != "pattern" or self.pattern == "hub"

    @property
    def needs_target(self) -> bool:
        """Whether each row needs a second span (B of a reroute)."""
        return self.op == "reroute"

    def selection(self, n_layers: int, n_heads: int) -> dict[int, list[int]]:
        """The targeted heads per layer; a layer or head outside the model raises."""
        chosen: dict[int, set[int]] = {layer: set(range(n_heads)) for layer in self.layers}
        for layer, head in self.heads:
            if head >= n_heads:
                raise ValueError(f"head L{layer}H{head} is outside a model of {n_heads} heads")
            chosen.setdefault(layer, set()).add(head)
        outside = [layer for layer in chosen if layer >= n_layers]
        if outside:
            raise ValueError(f"layers {outside} are outside a model of {n_layers} layers")
        return {layer: sorted(heads) for layer, heads in sorted(chosen.items())}

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (heads as lists)."""
        return {
            "op": self.op,
            "heads": [list(pair) for pair in self.heads],
            "layers": list(self.layers),
            "scale": self.scale,
            "pattern": self.pattern,
            "fraction": self.fraction,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AttentionOp:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        unknown = set(data) - {"op", "heads", "layers", "scale", "pattern", "fraction"}
        if unknown:
            raise ValueError(f"unknown attention-op keys {sorted(unknown)}")
        scale, fraction = data.get("scale"), data.get("fraction")
        return cls(
            str(data["op"]),
            tuple(tuple(pair) for pair in data.get("heads", ())),
            tuple(data.get("layers", ())),
            None if scale is None else float(scale),
            data.get("pattern"),
            None if fraction is None else float(fraction),
        )


@dataclass(frozen=True)
class AttentionEdit:
    """An op bound to a batch: ``selection`` (layer -> targeted heads) and per-row key spans
    ``span`` and ``target``, bool ``[rows, prompt_tokens]`` (None when the op needs none)."""

    op: AttentionOp
    selection: Mapping[int, Sequence[int]]
    span: torch.Tensor | None = None
    target: torch.Tensor | None = None

    def select(self, rows: torch.Tensor) -> AttentionEdit:
        """The edit of the rows ``rows`` (an index, as the KV cache's ``batch_select_indices``)."""
        pick = {
            key: None if mask is None else mask[rows.to(mask.device)]
            for key, mask in (("span", self.span), ("target", self.target))
        }
        return replace(self, **pick)


def _keys(mask: torch.Tensor | None, n_keys: int) -> torch.Tensor | None:
    """A prompt-token mask ``[rows, T]`` padded with False (or cut) to ``[rows, n_keys]``."""
    if mask is None:
        return None
    if mask.shape[1] >= n_keys:
        return mask[:, :n_keys]
    return torch.cat([mask, mask.new_zeros(mask.shape[0], n_keys - mask.shape[1])], dim=1)


def edit_weights(
    weights: torch.Tensor,
    scores: torch.Tensor,
    allowed: torch.Tensor,
    op: AttentionOp,
    span: torch.Tensor | None,
    target: torch.Tensor | None,
    query_index: torch.Tensor,
) -> torch.Tensor:
    """The edited weights ``W'`` of :class:`AttentionOp` ``op``.

    ``weights``: ``softmax(scores)``, float32 ``[batch, heads, queries, keys]``; ``scores``: the
    masked logits; ``allowed``: bool ``[batch, 1, queries, keys]`` (causal and unpadded);
    ``span``/``target``: bool ``[batch, keys]``; ``query_index``: the key index of each query row
    ``[queries]``.
    """
    if op.op == "pattern" and op.pattern == "uniform":
        uniform = allowed.float().expand_as(weights)
        return uniform / uniform.sum(-1, keepdim=True).clamp(min=1)
    if op.op == "pattern" and op.pattern == "previous":
        keys = torch.arange(weights.shape[-1], device=weights.device)
        before = allowed & (keys < query_index[:, None])
        latest = torch.where(before, keys, -1).amax(-1, keepdim=True)
        chosen = torch.where(latest >= 0, latest, query_index[:, None])
        return (keys == chosen).float().expand_as(weights)
    span_keys = span[:, None, None, :]
    if op.op == "scale_to_span":
        if op.scale == 0.0:
            edited = torch.softmax(scores.masked_fill(span_keys, -math.inf), dim=-1)
            keeps = (allowed & ~span_keys).any(-1, keepdim=True)
            return torch.where(keeps, edited, weights)
        return torch.softmax(scores + span_keys * math.log(op.scale), dim=-1)
    on_span = (weights * span_keys).sum(-1, keepdim=True)
    if op.op == "pattern":  # hub
        moved = (1 - op.fraction) * weights + op.fraction * weights * span_keys / on_span
        return torch.where(on_span > 0, moved, weights)
    onto = (target & ~span)[:, None, None, :]
    on_target = (weights * onto).sum(-1, keepdim=True)
    moved = weights * ~span_keys + weights * onto * (on_span / on_target)
    return torch.where((on_target > 0) & (on_span > 0), moved, weights)


def edit_delta(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor,
    scaling: float,
    heads: Sequence[int],
    edit: AttentionEdit,
) -> torch.Tensor:
    """``(W' - W) V`` of the targeted ``heads``: float32 ``[batch, queries, len(heads), head_dim]``.

    ``query`` ``[batch, heads, queries, head_dim]``, ``key``/``value`` ``[batch, kv_heads, keys,
    head_dim]`` (after RoPE and the cache), ``attention_mask`` the additive float mask
    ``[batch, 1, queries, >= keys]``. Query rows go in blocks of :data:`QUERY_BLOCK`.
    """
    n_queries, n_keys = query.shape[-2], key.shape[-2]
    groups = query.shape[1] // key.shape[1]
    kv_index = torch.tensor([head // groups for head in heads], device=key.device)
    q = query[:, list(heads)].float()
    k, v = key.float().index_select(1, kv_index), value.float().index_select(1, kv_index)
    span, target = _keys(edit.span, n_keys), _keys(edit.target, n_keys)
    if span is not None:
        span = span.to(query.device)
    if target is not None:
        target = target.to(query.device)
    minimum = torch.finfo(attention_mask.dtype).min
    blocks = []
    for first in range(0, n_queries, QUERY_BLOCK):
        rows = slice(first, min(first + QUERY_BLOCK, n_queries))
        mask = attention_mask[:, :, rows, :n_keys]
        scores = q[:, :, rows] @ k.transpose(-1, -2) * scaling + mask.float()
        weights = torch.softmax(scores, dim=-1)
        query_index = torch.arange(rows.start, rows.stop, device=query.device)
        query_index = query_index + n_keys - n_queries
        edited = edit_weights(
            weights, scores, mask > minimum / 2, edit.op, span, target, query_index
        )
        blocks.append((edited - weights) @ v)
    return torch.cat(blocks, dim=2).transpose(1, 2)


def _editing_attention(implementation: str) -> Callable[..., Any]:
    def attention(
        module: torch.nn.Module,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attention_mask: torch.Tensor | None,
        scaling: float | None = None,
        dropout: float = 0.0,
        attention_edit: AttentionEdit | None = None,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        stock = stock_attention(module, implementation)
        output, weights = stock(
            module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs
        )
        heads = None if attention_edit is None else attention_edit.selection.get(module.layer_idx)
        if not heads:
            return output, weights
        if attention_mask is None:
            raise ValueError("an attention edit needs a materialised attention mask")
        scale = module.head_dim**-0.5 if scaling is None else scaling
        delta = edit_delta(query, key, value, attention_mask, scale, heads, attention_edit)
        output = output.clone()
        output[:, :, list(heads)] += delta.to(output.dtype)
        return output, None

    return attention


@contextlib.contextmanager
def attention_editing(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Switch ``model`` to the editing wrapper of its own attention for the block.

    Inside, ``model(..., attention_edit=AttentionEdit)`` edits; without it the forward is the
    stock one (with a materialised mask).
    """
    with wrapped_attention(model, EDIT_IMPLEMENTATIONS, _editing_attention, "an attention edit"):
        yield model


def bind_edit(
    op: AttentionOp,
    n_layers: int,
    n_heads: int,
    span: torch.Tensor | None,
    target: torch.Tensor | None,
) -> AttentionEdit:
    """An :class:`AttentionEdit` of ``op`` on a batch whose rows have the key masks ``span``
    and ``target`` (bool ``[rows, T]``); a missing mask the op needs raises."""
    if op.needs_span and span is None:
        raise ValueError(f"attention op {op.op!r} needs a span per row")
    if op.needs_target and target is None:
        raise ValueError("a reroute needs a target span per row")
    return AttentionEdit(
        op,
        op.selection(n_layers, n_heads),
        span if op.needs_span else None,
        target if op.needs_target else None,
    )
