"""Per-head interventions at the input of ``self_attn.o_proj`` (method reference §9).

Head ``h`` of a layer owns the slice ``x[..., h*dh:(h+1)*dh]`` of the ``o_proj`` input
``x`` of shape ``[batch, seq, heads*dh]``. ``o_proj`` has no bias in Qwen2 and Llama, so
scaling that slice by ``s`` changes the layer's attention output by exactly
``(s - 1) * W_O[:, h*dh:(h+1)*dh] @ z_h``; zeroing it equals zeroing those ``W_O`` columns.
The hook runs on every forward call, so it is active during prefill and every cached decode
step, for every row of a (left-padded) batch.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

OPS = ("scale", "zero", "mean")


def stable_seed(*parts: Any) -> int:
    """A 63-bit seed from a SHA-256 of the parts (independent of PYTHONHASHSEED)."""
    digest = hashlib.sha256("\x1f".join(str(part) for part in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") >> 1


@dataclass(frozen=True, order=True)
class HeadIntervention:
    """One intervention on one attention head: ``op`` is ``scale`` (by ``value``), ``zero``
    or ``mean`` (replace the head's output with its reference mean; ``value`` unused)."""

    layer: int
    head: int
    op: str
    value: float | None = None

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(f"unknown intervention op {self.op!r}; expected one of {OPS}")
        if self.layer < 0 or self.head < 0:
            raise ValueError(f"negative layer/head in {self}")
        if self.op == "scale" and self.value is None:
            raise ValueError(f"op 'scale' needs a value (the factor): {self}")
        if self.op != "scale" and self.value is not None:
            raise ValueError(f"op {self.op!r} takes no value: {self}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form ``{layer, head, op, value}``."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HeadIntervention:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        unknown = set(data) - {"layer", "head", "op", "value"}
        if unknown:
            raise ValueError(f"unknown intervention keys {sorted(unknown)}")
        value = data.get("value")
        return cls(
            int(data["layer"]),
            int(data["head"]),
            str(data["op"]),
            None if value is None else float(value),
        )


def specs_to_json(interventions: Sequence[HeadIntervention]) -> list[dict[str, Any]]:
    """A list of interventions as JSON-able dicts, in a canonical (sorted) order."""
    return [item.to_dict() for item in sorted(interventions)]


def specs_from_json(rows: Sequence[Mapping[str, Any]]) -> list[HeadIntervention]:
    """Parse a list written by :func:`specs_to_json`."""
    return [HeadIntervention.from_dict(row) for row in rows]


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder layers of a causal LM (``model.get_decoder().layers``: Qwen2, Llama, ...)."""
    get_decoder = getattr(model, "get_decoder", None)
    layers = getattr(get_decoder(), "layers", None) if get_decoder else None
    if layers is None:
        raise TypeError(f"{type(model).__name__} has no decoder layers at get_decoder().layers")
    return layers


def head_geometry(model: nn.Module) -> tuple[int, int, int]:
    """``(n_layers, n_heads, head_dim)`` read from the model and its ``o_proj`` shape."""
    layers = decoder_layers(model)
    n_heads = int(model.config.num_attention_heads)
    in_features = layers[0].self_attn.o_proj.in_features
    if in_features % n_heads:
        raise ValueError(f"o_proj input width {in_features} is not divisible by {n_heads} heads")
    return len(layers), n_heads, in_features // n_heads


def validate_interventions(
    interventions: Sequence[HeadIntervention], n_layers: int, n_heads: int
) -> None:
    """Raise on out-of-range heads or on two interventions on the same head."""
    seen: set[tuple[int, int]] = set()
    for item in interventions:
        if item.layer >= n_layers or item.head >= n_heads:
            raise ValueError(f"{item} is outside the model ({n_layers} layers x {n_heads} heads)")
        if (item.layer, item.head) in seen:
            raise ValueError(f"two interventions on layer {item.layer} head {item.head}")
        seen.add((item.layer, item.head))


def _layer_tensors(
    items: Sequence[HeadIntervention],
    n_heads: int,
    head_dim: int,
    head_means: np.ndarray | None,
    module: nn.Module,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-layer affine map: factor ``[heads, 1]`` and optional offset ``[heads, head_dim]``."""
    weight = module.weight
    factor = torch.ones(n_heads, 1, dtype=weight.dtype, device=weight.device)
    offset = None
    for item in items:
        factor[item.head] = 0.0 if item.op in ("zero", "mean") else float(item.value)
        if item.op == "mean":
            if head_means is None:
                raise ValueError(f"{item} needs head means (see compute_head_means)")
            if offset is None:
                offset = torch.zeros(n_heads, head_dim, dtype=weight.dtype, device=weight.device)
            offset[item.head] = torch.as_tensor(head_means[item.layer, item.head])
    return factor, offset


class RowGate:
    """Which rows of the batch an intervention acts on now: ``active`` bool ``[rows]``, set by
    the decode loop before each forward call (dynamic interventions); None means every row."""

    def __init__(self) -> None:
        self.active: torch.Tensor | None = None


@contextlib.contextmanager
def apply_interventions(
    model: nn.Module,
    interventions: Sequence[HeadIntervention],
    head_means: np.ndarray | None = None,
    gate: RowGate | None = None,
) -> Iterator[None]:
    """Install forward pre-hooks on the ``o_proj`` of every touched layer; always remove them.

    ``head_means``: float array ``[layers, heads, head_dim]``, needed by ``mean`` ops.
    ``gate``: apply the interventions only to the rows its ``active`` mask marks.
    An empty list installs nothing.
    """
    n_layers, n_heads, head_dim = head_geometry(model)
    validate_interventions(interventions, n_layers, n_heads)
    if head_means is not None and head_means.shape != (n_layers, n_heads, head_dim):
        raise ValueError(
            f"head means have shape {head_means.shape}, model needs {(n_layers, n_heads, head_dim)}"
        )
    by_layer: dict[int, list[HeadIntervention]] = {}
    for item in interventions:
        by_layer.setdefault(item.layer, []).append(item)
    layers = decoder_layers(model)
    handles = []
    try:
        for layer, items in sorted(by_layer.items()):
            o_proj = layers[layer].self_attn.o_proj
            factor, offset = _layer_tensors(items, n_heads, head_dim, head_means, o_proj)

            def pre_hook(module, args, factor=factor, offset=offset):
                (hidden,) = args
                per_head = hidden.unflatten(-1, (n_heads, head_dim))
                edited = per_head * factor
                if offset is not None:
                    edited = edited + offset
                if gate is not None and gate.active is not None:
                    active = gate.active.to(hidden.device)[:, None, None, None]
                    edited = torch.where(active, edited, per_head)
                return (edited.flatten(-2),)

            handles.append(o_proj.register_forward_pre_hook(pre_hook))
        yield
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def compute_head_means(
    model: nn.Module, batches: Sequence[Mapping[str, torch.Tensor]]
) -> tuple[np.ndarray, int]:
    """Mean ``o_proj`` input per head over every non-pad token of the reference batches.

    ``batches``: tokenizer outputs (``input_ids``, ``attention_mask``) on the model's device.
    Returns ``(means [layers, heads, head_dim] float32, n_tokens)``.
    """
    n_layers, n_heads, head_dim = head_geometry(model)
    sums = torch.zeros(n_layers, n_heads * head_dim, dtype=torch.float64)
    mask_holder: dict[str, torch.Tensor] = {}
    handles = []

    def make_hook(layer: int):
        def hook(module, args):
            mask = mask_holder["mask"].to(args[0].device, torch.float64)
            sums[layer] += torch.einsum("bs,bsd->d", mask, args[0].double()).cpu()

        return hook

    layers = decoder_layers(model)
    n_tokens = 0
    try:
        for layer in range(n_layers):
            handles.append(
                layers[layer].self_attn.o_proj.register_forward_pre_hook(make_hook(layer))
            )
        for batch in tqdm(batches, desc="reference traces", unit="trace"):
            mask_holder["mask"] = batch["attention_mask"]
            model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            n_tokens += int(batch["attention_mask"].sum())
    finally:
        for handle in handles:
            handle.remove()
    if n_tokens == 0:
        raise ValueError("no reference tokens to average over")
    means = (sums / n_tokens).reshape(n_layers, n_heads, head_dim)
    return means.numpy().astype(np.float32), n_tokens
