"""Batched generation with head interventions (method reference §2.2, §9.8, §10.2).

Sampling is done per row: temperature and top-p are applied to row ``i``'s logits and its
next token is drawn with row ``i``'s own ``torch.Generator`` (seeded from a stable hash of
problem, sample and condition). A row's tokens therefore depend on its own seed and logits
only, not on which other prompts share its batch. The decode loop is ours (a KV cache, left
padding): each distinct prompt is prefilled once and shared by its samples, and finished rows
leave the batch; the intervention hooks stay installed for prefill and every step.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm
from transformers import DynamicCache

from anchorflow.interventions.attention_ops import AttentionOp, attention_editing, bind_edit
from anchorflow.interventions.heads import (
    HeadIntervention,
    RowGate,
    apply_interventions,
    head_geometry,
    stable_seed,
)
from anchorflow.interventions.patching import (
    ResidualPatch,
    apply_residual_patch,
    sentence_token_mask,
)
from anchorflow.interventions.triggers import Trigger, token_fires


@dataclass(frozen=True)
class SamplingSettings:
    """Decoding parameters; ``temperature == 0`` means greedy decoding."""

    temperature: float
    top_p: float
    max_new_tokens: int
    batch_size: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_params(
        cls, params: Mapping[str, Any], experiment: Mapping[str, Any] | None = None
    ) -> SamplingSettings:
        """The settings of the interventions ``params`` (``temperature``, ``top_p``,
        ``max_new_tokens``, ``batch_size``); an ``experiment``'s own ``max_new_tokens`` wins."""
        max_new_tokens = (experiment or {}).get("max_new_tokens") or params["max_new_tokens"]
        return cls(params["temperature"], params["top_p"], max_new_tokens, params["batch_size"])


def adds_special_tokens(prompt_format: str) -> bool:
    """Whether prompts of ``prompt_format`` are tokenized with the tokenizer's special tokens: a
    chat template already starts with BOS, a raw prompt gets them."""
    return prompt_format == "raw"


@dataclass(frozen=True)
class GenerationItem:
    """One prompt to complete, with its own seed; ``item_id`` is unique within a job and
    ``meta`` is copied into the item's output row."""

    item_id: str
    prompt: str
    seed: int
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False)


def nucleus_probabilities(scores: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """Temperature-scaled softmax restricted to the smallest top-p set, renormalised.

    ``scores``: ``[batch, vocab]``; returns float32 probabilities ``[batch, vocab]``.
    """
    probs = torch.softmax(scores.float() / temperature, dim=-1)
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
    sorted_probs = sorted_probs.masked_fill(mass_before >= top_p, 0.0)
    kept = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return kept / kept.sum(dim=-1, keepdim=True)


def sample_next_tokens(
    logits: torch.Tensor,
    generators: Sequence[torch.Generator] | None,
    temperature: float,
    top_p: float,
) -> torch.Tensor:
    """The next token of each row: argmax when ``temperature == 0``, else a draw from the row's
    nucleus distribution with that row's own generator. ``logits``: ``[rows, vocab]``;
    returns ``[rows]``."""
    if temperature == 0 or generators is None:
        return logits.argmax(dim=-1)
    probs = nucleus_probabilities(logits, temperature, top_p)
    return torch.stack(
        [
            torch.multinomial(probs[row], 1, generator=generator)[0]
            for row, generator in enumerate(generators)
        ]
    )


def eos_token_ids(model: nn.Module, tokenizer: Any) -> list[int]:
    """The stop tokens: the model's generation config, else the tokenizer's EOS."""
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if configured is None:
        configured = tokenizer.eos_token_id
    if configured is None:
        raise ValueError("neither the model nor the tokenizer defines an EOS token")
    return [int(configured)] if isinstance(configured, int) else [int(x) for x in configured]


def _batches(items: Sequence[GenerationItem], size: int) -> Iterator[list[GenerationItem]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def patch_seed(item: GenerationItem) -> int:
    """The noise seed of an item's patch: shared by the samples of one problem when the item
    carries ``meta["patch_seed"]`` (their prefill is then computed once), else the item's own."""
    return stable_seed(item.meta.get("patch_seed", item.seed), "patch")


SPAN_KEYS = ("attention_span", "attention_target")


def _prefill_key(item: GenerationItem, patched: bool) -> tuple[Any, ...]:
    """Items with equal keys have identical prompt activations (one prefill serves them all)."""
    spans = tuple(tuple(item.meta.get(key) or ()) for key in SPAN_KEYS)
    if not patched:
        return (item.prompt, spans)
    span = item.meta.get("patch_span")
    return (item.prompt, spans, tuple(span) if span else None, patch_seed(item) if span else None)


def _span_masks(
    offsets: torch.Tensor, attention_mask: torch.Tensor, firsts: Sequence[GenerationItem]
) -> list[torch.Tensor | None]:
    """The ``attention_span`` and ``attention_target`` token masks ``[rows, T]`` of the items
    (None where no item has that span)."""
    masks = []
    for key in SPAN_KEYS:
        spans = [item.meta.get(key) for item in firsts]
        masks.append(
            None
            if all(span is None for span in spans)
            else sentence_token_mask(offsets, attention_mask, spans)
        )
    return masks


@torch.no_grad()
def generate_batch(
    model: nn.Module,
    tokenizer: Any,
    items: Sequence[GenerationItem],
    settings: SamplingSettings,
    add_special_tokens: bool = True,
    patch: ResidualPatch | None = None,
    *,
    attention: AttentionOp | None = None,
    trigger: Trigger | None = None,
    gate: RowGate | None = None,
) -> list[dict[str, Any]]:
    """Complete one batch; per row: text (up to the stop token), token count (including the
    stop token), whether a stop token was produced.

    Each distinct prompt is prefilled once (left-padded) and its KV cache copied to the rows
    that share it; rows leave the batch as they stop, so the remaining steps cost only what
    is still running. ``patch``: patch each item's ``meta["patch_span"]`` (characters of its
    prompt) at prefill. ``attention``: edit attention (the model inside
    :func:`attention_editing`) with each item's ``meta["attention_span"]`` and
    ``meta["attention_target"]`` as its spans. ``trigger``: switch ``gate`` on for a row for the
    ``trigger.n_steps`` forward passes after its text completes a trigger string (off at
    prefill); each row then also reports ``gated_steps``.
    """
    stops = eos_token_ids(model, tokenizer)
    keys = [_prefill_key(item, patch is not None) for item in items]
    distinct = list(dict.fromkeys(keys))
    firsts = [items[keys.index(key)] for key in distinct]
    encoded = tokenizer(
        [item.prompt for item in firsts],
        return_tensors="pt",
        padding=True,
        padding_side="left",
        add_special_tokens=add_special_tokens,
        return_offsets_mapping=patch is not None or attention is not None,
    )
    offsets = encoded.pop("offset_mapping", None)
    edit_kwargs: dict[str, Any] = {}
    if attention is not None:
        n_layers, n_heads, _ = head_geometry(model)
        span, target = _span_masks(offsets, encoded["attention_mask"], firsts)
        edit_kwargs["attention_edit"] = bind_edit(attention, n_layers, n_heads, span, target)
    patching: contextlib.AbstractContextManager = contextlib.nullcontext()
    if patch is not None:
        spans = [item.meta.get("patch_span") for item in firsts]
        mask = sentence_token_mask(offsets, encoded["attention_mask"], spans)
        seeds = [patch_seed(item) for item in firsts]
        patching = apply_residual_patch(model, patch, mask, encoded["attention_mask"], seeds)
    device = model.device
    attention_mask = encoded["attention_mask"].to(device)
    positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    cache = DynamicCache(config=model.config)
    if gate is not None:
        gate.active = torch.zeros(len(firsts), dtype=torch.bool)
    with patching:
        logits = model(
            input_ids=encoded["input_ids"].to(device),
            attention_mask=attention_mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
            **edit_kwargs,
        ).logits[:, -1]
    owner = torch.tensor([distinct.index(key) for key in keys], device=device)
    cache.batch_select_indices(owner)
    logits, attention_mask = logits[owner], attention_mask[owner]
    if attention is not None:
        edit_kwargs["attention_edit"] = edit_kwargs["attention_edit"].select(owner)
    remaining, gated = [0] * len(items), [0] * len(items)
    generators = None
    if settings.temperature > 0:
        generators = [torch.Generator(device=device).manual_seed(item.seed) for item in items]
    stop_ids = torch.tensor(stops, device=device)
    tokens: list[list[int]] = [[] for _ in items]
    stopped = [False] * len(items)
    active = list(range(len(items)))
    for _ in range(settings.max_new_tokens):
        row_generators = [generators[row] for row in active] if generators else None
        chosen = sample_next_tokens(logits, row_generators, settings.temperature, settings.top_p)
        finished = torch.isin(chosen, stop_ids).tolist()
        for row, token, done in zip(active, chosen.tolist(), finished, strict=True):
            tokens[row].append(token)
            stopped[row] = done
            if trigger is not None and token_fires(tokenizer, tokens[row], trigger.strings):
                remaining[row] = trigger.n_steps
        keep = [slot for slot, done in enumerate(finished) if not done]
        if not keep or len(tokens[active[keep[0]]]) == settings.max_new_tokens:
            break
        if len(keep) < len(active):
            index = torch.tensor(keep, device=device)
            cache.batch_select_indices(index)
            chosen, attention_mask = chosen[index], attention_mask[index]
            active = [active[slot] for slot in keep]
            if attention is not None:
                edit_kwargs["attention_edit"] = edit_kwargs["attention_edit"].select(index)
        if gate is not None:
            gate.active = torch.tensor([remaining[row] > 0 for row in active])
            for row in active:
                gated[row] += int(remaining[row] > 0)
                remaining[row] = max(remaining[row] - 1, 0)
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones((len(active), 1))], 1)
        logits = model(
            input_ids=chosen[:, None],
            attention_mask=attention_mask,
            position_ids=attention_mask.sum(-1, keepdim=True) - 1,
            past_key_values=cache,
            use_cache=True,
            **edit_kwargs,
        ).logits[:, -1]
    rows = []
    for row_tokens, row_stopped, row_gated in zip(tokens, stopped, gated, strict=True):
        end = len(row_tokens) - int(row_stopped)
        text = tokenizer.decode(row_tokens[:end], skip_special_tokens=False)
        row = {"text": text, "n_tokens": len(row_tokens), "stopped": row_stopped}
        rows.append(row | ({"gated_steps": row_gated} if trigger is not None else {}))
    return rows


def generate(
    model: nn.Module,
    tokenizer: Any,
    items: Sequence[GenerationItem],
    settings: SamplingSettings,
    interventions: Sequence[HeadIntervention] = (),
    head_means: np.ndarray | None = None,
    add_special_tokens: bool = True,
    patch: ResidualPatch | None = None,
    *,
    attention: AttentionOp | None = None,
    trigger: Trigger | None = None,
) -> list[dict[str, Any]]:
    """Generate every item in batches of ``settings.batch_size`` under the interventions
    (and the residual ``patch`` of each item's ``patch_span``, the ``attention`` edit of its
    ``attention_span``/``attention_target``, when given). With a ``trigger`` the head
    interventions act only in the steps it switches on (:func:`generate_batch`).

    Each output row carries ``item_id``, ``seed``, the batch index and the batch composition
    (``batch_items``) next to the fields of :func:`generate_batch`.
    """
    rows: list[dict[str, Any]] = []
    batches = list(_batches(items, settings.batch_size))
    gate = RowGate() if trigger is not None else None
    editing = attention_editing(model) if attention is not None else contextlib.nullcontext()
    with apply_interventions(model, interventions, head_means, gate), editing:
        for index, batch in enumerate(tqdm(batches, desc="generate", unit="batch")):
            outputs = generate_batch(
                model,
                tokenizer,
                batch,
                settings,
                add_special_tokens,
                patch,
                attention=attention,
                trigger=trigger,
                gate=gate,
            )
            composition = [item.item_id for item in batch]
            for item, output in zip(batch, outputs, strict=True):
                rows.append(
                    {
                        **item.meta,
                        "item_id": item.item_id,
                        "seed": item.seed,
                        "batch": index,
                        "batch_items": composition,
                        **output,
                    }
                )
    return rows


def shard(items: Sequence[Any], index: int, n_shards: int) -> list[Any]:
    """Items ``index, index + n_shards, ...`` (a deterministic round-robin shard)."""
    if not 0 <= index < n_shards:
        raise ValueError(f"shard {index} outside 0..{n_shards - 1}")
    return list(items[index::n_shards])
