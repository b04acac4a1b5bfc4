"""Attention suppression: a sentence's key columns masked before the softmax.

Suppressing sentence ``s`` (token span ``[a_s, b_s)``) masks its key columns for every query row,
in every layer and head or only in a chosen set of ``(layer, head)`` pairs (method reference
§6.1, §9.5). The mask goes through a registered attention function that wraps the model's own
eager or SDPA attention, so no attention code is copied and every model family built on
transformers' ``AttentionInterface`` (Qwen2, Llama, ...) works.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from anchorflow.models.attention_wrappers import stock_attention, wrapped_attention

SUPPRESSION_IMPLEMENTATIONS = {
    "eager": "anchorflow_suppression_eager",
    "sdpa": "anchorflow_suppression_sdpa",
}


log = logging.getLogger(__name__)


HeadSelection = dict[int, torch.Tensor]
"""Heads to suppress: layer index -> bool ``[num_attention_heads]``; absent layers are untouched."""


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
        stock = stock_attention(module, implementation)
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


@contextlib.contextmanager
def suppression_attention(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Switch ``model`` to the suppressing wrapper of its own attention for the block.

    Inside, ``model(..., suppressed_keys=bool [batch, keys], suppressed_heads=HeadSelection)``
    suppresses; without those arguments the forward is the stock one. ``query_block=B`` computes
    attention about ``B`` query rows at a time (:func:`query_blocks`) against all keys: the same
    arithmetic per row, bit for bit on CPU for blocks of two rows or more, with
    ``[batch, heads, B + 1, keys]`` scores at most.
    """
    with wrapped_attention(
        model, SUPPRESSION_IMPLEMENTATIONS, _suppressing_attention, "attention suppression"
    ):
        yield model


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
