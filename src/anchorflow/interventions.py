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
import random
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
    """The decoder layers of a Qwen2/Llama causal LM (``model.model.layers``)."""
    inner = getattr(model, "model", model)
    layers = getattr(inner, "layers", None)
    if layers is None:
        raise TypeError(f"{type(model).__name__} has no decoder layers at .model.layers")
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


@contextlib.contextmanager
def apply_interventions(
    model: nn.Module,
    interventions: Sequence[HeadIntervention],
    head_means: np.ndarray | None = None,
) -> Iterator[None]:
    """Install forward pre-hooks on the ``o_proj`` of every touched layer; always remove them.

    ``head_means``: float array ``[layers, heads, head_dim]``, needed by ``mean`` ops.
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
                per_head = hidden.unflatten(-1, (n_heads, head_dim)) * factor
                if offset is not None:
                    per_head = per_head + offset
                return (per_head.flatten(-2),)

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


def top_heads(receivers: Sequence[tuple[int, int]], k: int) -> list[tuple[int, int]]:
    """The first ``k`` heads of a rank-ordered receiver list ``[(layer, head), ...]``."""
    if k > len(receivers):
        raise ValueError(f"asked for the top {k} receiver heads but only {len(receivers)} exist")
    return list(receivers[:k])


def draw_matched_heads(
    targets: Sequence[tuple[int, int]],
    n_heads: int,
    excluded: Sequence[tuple[int, int]],
    seed: int,
) -> list[tuple[int, int]]:
    """Random heads with the same layer distribution as ``targets``, none of them in
    ``excluded`` (and no head twice), drawn with ``random.Random(seed)``."""
    rng = random.Random(seed)
    taken = set(excluded)
    drawn = []
    for layer, _ in targets:
        pool = [(layer, head) for head in range(n_heads) if (layer, head) not in taken]
        if not pool:
            raise ValueError(f"layer {layer} has no head left to draw (all excluded or taken)")
        choice = rng.choice(pool)
        taken.add(choice)
        drawn.append(choice)
    return drawn


def heads_to_interventions(
    heads: Sequence[tuple[int, int]], op: str, value: float | None = None
) -> list[HeadIntervention]:
    """The same op on each head."""
    return [HeadIntervention(int(layer), int(head), op, value) for layer, head in heads]


EXPERIMENTS = ("amplification", "ablation", "counterfactual", "patching")


def _ablation_names(op: str, max_heads: int, n_draws: int) -> list[str]:
    names = [f"top{k}_{op}" for k in range(1, max_heads + 1)]
    names += [f"random{k}_{op}_draw{d}" for d in range(n_draws) for k in range(1, max_heads + 1)]
    return names


def condition_names(section: Mapping[str, Any]) -> dict[str, list[str]]:
    """Condition names per enabled experiment, from the ``interventions`` config alone."""
    names: dict[str, list[str]] = {}
    amplification = section["amplification"]
    if amplification["enabled"]:
        pairs = [
            (k, scale) for k in amplification["head_set_sizes"] for scale in amplification["scales"]
        ]
        names["amplification"] = ["baseline"] + [f"top{k}_x{scale:g}" for k, scale in pairs]
        names["amplification"] += [
            f"random{k}_x{scale:g}_draw{d}"
            for d in range(amplification["n_random_draws"])
            for k, scale in pairs
        ]
    ablation = section["ablation"]
    if ablation["enabled"]:
        names["ablation"] = ["baseline"] + _ablation_names(
            ablation["op"], ablation["max_heads"], ablation["n_random_draws"]
        )
    counterfactual = section["counterfactual"]
    if counterfactual["enabled"]:
        k, op = counterfactual["n_heads"], counterfactual["op"]
        names["counterfactual"] = ["baseline", f"top{k}_{op}"] + [
            f"random{k}_{op}_draw{d}" for d in range(counterfactual["n_random_draws"])
        ]
    patching = section["patching"]
    if patching["enabled"]:
        names["patching"] = ["baseline", "anchor"] + [
            f"control_draw{d}" for d in range(patching["n_random_draws"])
        ]
    return names


def condition_groups(names: Sequence[str], per_job: int) -> list[list[str]]:
    """Consecutive groups of at most ``per_job`` condition names (one generation job each)."""
    if per_job < 1:
        raise ValueError(f"conditions per job must be positive, got {per_job}")
    return [list(names[start : start + per_job]) for start in range(0, len(names), per_job)]


def _condition(
    kind: str, heads: Sequence[tuple[int, int]], op: str, value: float | None, **extra: Any
) -> dict[str, Any]:
    interventions = heads_to_interventions(heads, op, value)
    return {
        "kind": kind,
        "heads": [list(head) for head in heads],
        "interventions": specs_to_json(interventions),
        **extra,
    }


def random_pool_exclusions(
    receivers: Sequence[tuple[int, int]], targets: Sequence[tuple[int, int]], exclude_top: int
) -> list[tuple[int, int]]:
    """Heads no random draw may contain: the top ``exclude_top`` receiver heads (the receiver
    set) and every targeted head."""
    return sorted(set(receivers[:exclude_top]) | set(targets))


def _random_draws(
    section: Mapping[str, Any],
    experiment: str,
    receivers: Sequence[tuple[int, int]],
    targets: Sequence[tuple[int, int]],
    n_heads: int,
    n_draws: int,
) -> list[tuple[int, list[tuple[int, int]]]]:
    """``[(seed, heads)]`` per draw: layer-matched to ``targets``, outside the receiver set."""
    excluded = random_pool_exclusions(
        receivers, targets, section["receiver_heads"]["exclude_from_random"]
    )
    draws = []
    for draw in range(n_draws):
        seed = stable_seed(section["seed"], "random_heads", experiment, draw)
        draws.append((seed, draw_matched_heads(targets, n_heads, excluded, seed)))
    return draws


def build_conditions(
    section: Mapping[str, Any], receivers: Sequence[tuple[int, int]], n_layers: int, n_heads: int
) -> dict[str, dict[str, dict[str, Any]]]:
    """Resolve every head condition to its heads and intervention specs.

    ``receivers``: rank-ordered ``(layer, head)`` receiver heads. Random heads are matched to
    the targeted receiver heads' layers, exclude the top ``receiver_heads.exclude_from_random``
    receiver heads (and the targets), are drawn once per draw for the largest set (so smaller
    sets are nested prefixes, and every amplification scale of a draw uses the same heads) and
    are recorded with their seed. Returns ``{experiment: {condition: {kind, heads,
    interventions, ...}}}`` with keys matching :func:`condition_names` (patching excepted: see
    :func:`anchorflow.patching.patching_conditions`).
    """
    for layer, head in receivers:
        if not (0 <= layer < n_layers and 0 <= head < n_heads):
            raise ValueError(f"receiver head L{layer}H{head} is outside the model")
    resolved: dict[str, dict[str, dict[str, Any]]] = {}
    amplification = section["amplification"]
    if amplification["enabled"]:
        targets = top_heads(receivers, max(amplification["head_set_sizes"]))
        draws = _random_draws(
            section, "amplification", receivers, targets, n_heads, amplification["n_random_draws"]
        )
        conditions = {"baseline": _condition("baseline", [], "scale", None)}
        pairs = [
            (k, float(s)) for k in amplification["head_set_sizes"] for s in amplification["scales"]
        ]
        for k, scale in pairs:
            conditions[f"top{k}_x{scale:g}"] = _condition(
                "receivers", targets[:k], "scale", scale, k=k, scale=scale
            )
        for draw, (seed, drawn) in enumerate(draws):
            for k, scale in pairs:
                conditions[f"random{k}_x{scale:g}_draw{draw}"] = _condition(
                    "random", drawn[:k], "scale", scale, k=k, scale=scale, draw=draw, draw_seed=seed
                )
        resolved["amplification"] = conditions
    for experiment in ("ablation", "counterfactual"):
        settings = section[experiment]
        if not settings["enabled"]:
            continue
        op = settings["op"]
        sizes = (
            list(range(1, settings["max_heads"] + 1))
            if experiment == "ablation"
            else [settings["n_heads"]]
        )
        targets = top_heads(receivers, max(sizes))
        draws = _random_draws(
            section, experiment, receivers, targets, n_heads, settings["n_random_draws"]
        )
        conditions = {"baseline": _condition("baseline", [], op, None)}
        for k in sizes:
            conditions[f"top{k}_{op}"] = _condition("receivers", targets[:k], op, None, k=k)
        for draw, (seed, drawn) in enumerate(draws):
            for k in sizes:
                conditions[f"random{k}_{op}_draw{draw}"] = _condition(
                    "random", drawn[:k], op, None, k=k, draw=draw, draw_seed=seed
                )
        resolved[experiment] = conditions
    return resolved
