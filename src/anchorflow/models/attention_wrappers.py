"""Wrappers of a model's own attention: how a stage (suppression, attention edits) swaps in an
attention function that calls the model's stock eager or SDPA attention and changes its inputs
or outputs, through transformers' ``AttentionInterface``, so no attention code is copied."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, eager_mask
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS


def stock_attention(module: torch.nn.Module, implementation: str) -> Callable[..., Any]:
    """The model's own ``eager`` (its module-level ``eager_attention_forward``) or ``sdpa``
    attention function for the attention ``module``."""
    if implementation == "sdpa":
        return ALL_ATTENTION_FUNCTIONS["sdpa"]
    eager = getattr(sys.modules[type(module).__module__], "eager_attention_forward", None)
    if eager is None:
        raise TypeError(
            f"{type(module).__name__} has no module-level eager_attention_forward to wrap; "
            "load the model with attn_implementation='sdpa'"
        )
    return eager


def register_wrappers(
    names: Mapping[str, str], make_wrapper: Callable[[str], Callable[..., Any]]
) -> None:
    """Register ``make_wrapper(stock)`` as ``names[stock]`` for ``stock`` in eager and sdpa
    (idempotent). Both use transformers' eager mask (a materialised float mask), which the
    wrappers may edit."""
    for stock, name in names.items():
        AttentionInterface.register(name, make_wrapper(stock))
        AttentionMaskInterface.register(name, eager_mask)


@contextlib.contextmanager
def wrapped_attention(
    model: torch.nn.Module,
    names: Mapping[str, str],
    make_wrapper: Callable[[str], Callable[..., Any]],
    subject: str,
) -> Iterator[torch.nn.Module]:
    """Switch ``model`` to the registered wrapper of its own attention for the block, and back.

    ``names``: stock implementation (``eager``, ``sdpa``) -> the wrapper's registered name;
    ``subject`` names the stage in the errors (a model on another implementation, or with
    layers other than full attention)."""
    original = model.config._attn_implementation
    if original not in names:
        raise ValueError(
            f"{subject} wraps eager or sdpa attention, not {original!r}; "
            "load the model with attn_implementation='eager' or 'sdpa'"
        )
    layer_types = getattr(model.config, "layer_types", None) or []
    if any(kind != "full_attention" for kind in layer_types):
        raise ValueError(f"{subject} supports full-attention layers only")
    register_wrappers(names, make_wrapper)
    model.set_attn_implementation(names[original])
    try:
        yield model
    finally:
        model.set_attn_implementation(original)
