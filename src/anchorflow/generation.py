"""Batched generation with head interventions (method reference §2.2, §9.8, §10.2).

Sampling is done per row: a logits processor applies temperature and top-p and draws the
next token of row ``i`` with row ``i``'s own ``torch.Generator`` (seeded from a stable hash
of problem, sample and condition), then hands ``generate`` a one-hot score so its greedy step
picks exactly that token. A row's tokens therefore depend on its own seed and logits only,
not on which other prompts share its batch. Left padding and the KV cache are the ordinary
``generate`` machinery; the intervention hooks stay installed for prefill and every step.
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
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList

from anchorflow.interventions import HeadIntervention, apply_interventions, stable_seed
from anchorflow.patching import ResidualPatch, apply_residual_patch, sentence_token_mask

PAPER_PROMPT = (
    "Solve this math problem step by step. You MUST put your final answer in \\boxed{{}}. "
    "Problem: {problem} Solution: \n<think>\n"
)
CHAT_INSTRUCTION = (
    "Solve this math problem step by step. You MUST put your final answer in \\boxed{{}}. "
    "Problem: {problem}"
)
PROMPT_FORMATS = ("raw", "chat")


def build_prompt(problem: str, prompt_format: str, tokenizer: Any = None) -> str:
    """The prompt text: ``raw`` = the dataset's completion prompt (no chat template);
    ``chat`` = the instruction rendered with the tokenizer's chat template."""
    if prompt_format == "raw":
        return PAPER_PROMPT.format(problem=problem)
    if prompt_format == "chat":
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            raise ValueError("prompt format 'chat' needs a tokenizer with a chat template")
        messages = [{"role": "user", "content": CHAT_INSTRUCTION.format(problem=problem)}]
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    raise ValueError(f"unknown prompt format {prompt_format!r}; expected one of {PROMPT_FORMATS}")


@dataclass(frozen=True)
class SamplingSettings:
    """Decoding parameters; ``temperature == 0`` means greedy decoding."""

    temperature: float
    top_p: float
    max_new_tokens: int
    batch_size: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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


class PerRowSampler(LogitsProcessor):
    """Draw each row's next token with that row's generator; return one-hot scores."""

    def __init__(self, seeds: Sequence[int], temperature: float, top_p: float) -> None:
        self.seeds = list(seeds)
        self.temperature = temperature
        self.top_p = top_p
        self.generators: list[torch.Generator] | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.Tensor:
        if scores.shape[0] != len(self.seeds):
            raise ValueError(f"{scores.shape[0]} rows but {len(self.seeds)} seeds")
        if self.generators is None:
            self.generators = [
                torch.Generator(device=scores.device).manual_seed(seed) for seed in self.seeds
            ]
        probs = nucleus_probabilities(scores, self.temperature, self.top_p)
        chosen = torch.stack(
            [
                torch.multinomial(probs[row], 1, generator=generator)[0]
                for row, generator in enumerate(self.generators)
            ]
        )
        one_hot = torch.full_like(scores, float("-inf"))
        return one_hot.scatter(-1, chosen[:, None], 0.0)


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


@torch.no_grad()
def generate_batch(
    model: nn.Module,
    tokenizer: Any,
    items: Sequence[GenerationItem],
    settings: SamplingSettings,
    add_special_tokens: bool = True,
    patch: ResidualPatch | None = None,
) -> list[dict[str, Any]]:
    """Complete one left-padded batch; per row: text (up to the stop token), token count
    (including the stop token), whether a stop token was produced.

    ``patch``: patch each item's ``meta["patch_span"]`` (characters of its prompt) at prefill.
    """
    stops = eos_token_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    encoded = tokenizer(
        [item.prompt for item in items],
        return_tensors="pt",
        padding=True,
        padding_side="left",
        add_special_tokens=add_special_tokens,
        return_offsets_mapping=patch is not None,
    )
    patching: contextlib.AbstractContextManager = contextlib.nullcontext()
    if patch is not None:
        offsets = encoded.pop("offset_mapping")
        spans = [item.meta.get("patch_span") for item in items]
        mask = sentence_token_mask(offsets, encoded["attention_mask"], spans)
        seeds = [stable_seed(item.seed, "patch") for item in items]
        patching = apply_residual_patch(model, patch, mask, encoded["attention_mask"], seeds)
    encoded = encoded.to(model.device)
    config = GenerationConfig(
        do_sample=False,
        max_new_tokens=settings.max_new_tokens,
        pad_token_id=pad_id,
        eos_token_id=stops,
        use_cache=True,
    )
    processors = LogitsProcessorList()
    if settings.temperature > 0:
        processors.append(
            PerRowSampler([item.seed for item in items], settings.temperature, settings.top_p)
        )
    with patching:
        output = model.generate(
            input_ids=encoded["input_ids"],
            attention_mask=encoded["attention_mask"],
            generation_config=config,
            logits_processor=processors,
        )
    new_tokens = output[:, encoded["input_ids"].shape[1] :].cpu().numpy()
    rows = []
    for tokens in new_tokens:
        stop_positions = np.flatnonzero(np.isin(tokens, stops))
        stopped = stop_positions.size > 0
        end = int(stop_positions[0]) if stopped else len(tokens)
        text = tokenizer.decode(tokens[:end].tolist(), skip_special_tokens=False)
        rows.append({"text": text, "n_tokens": end + int(stopped), "stopped": bool(stopped)})
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
) -> list[dict[str, Any]]:
    """Generate every item in batches of ``settings.batch_size`` under the interventions
    (and the residual ``patch`` of each item's ``patch_span``, when given).

    Each output row carries ``item_id``, ``seed``, the batch index and the batch composition
    (``batch_items``) next to the fields of :func:`generate_batch`.
    """
    rows: list[dict[str, Any]] = []
    batches = list(_batches(items, settings.batch_size))
    with apply_interventions(model, interventions, head_means):
        for index, batch in enumerate(tqdm(batches, desc="generate", unit="batch")):
            outputs = generate_batch(model, tokenizer, batch, settings, add_special_tokens, patch)
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


def prefix_text(chunks: Sequence[str], k: int) -> str:
    """Sentences ``0..k-1`` joined with single spaces (the dataset's resampling prefix,
    without the reference's ``str.replace`` bug that removed repeated sentences)."""
    if not 0 <= k <= len(chunks):
        raise ValueError(f"prefix of {k} sentences requested from {len(chunks)}")
    return " ".join(chunks[:k])


def sentence_span(base_prompt: str, chunks: Sequence[str], index: int) -> tuple[int, int]:
    """Characters ``[start, end)`` of sentence ``index`` in ``base_prompt + prefix_text(chunks,
    len(chunks))``."""
    if not 0 <= index < len(chunks):
        raise ValueError(f"sentence {index} outside the {len(chunks)} sentences of the prefix")
    start = len(base_prompt) + len(prefix_text(chunks, index)) + (1 if index else 0)
    return start, start + len(chunks[index])


PROBLEM_PREFIXES = ("none", "reasoning")


def _record_problems(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per problem with a gold answer, sorted by id; its trace is the correct one
    when the problem has one (so a reasoning prefix reaches the gold answer)."""
    by_id: dict[int, dict[str, Any]] = {}
    for record in sorted(records, key=lambda r: (int(r["problem"]), r["correctness"] != "correct")):
        by_id.setdefault(
            int(record["problem"]),
            {
                "problem": int(record["problem"]),
                "problem_text": record["problem_text"],
                "gt_answer": record["gt_answer"],
                "level": record.get("level", ""),
                "trace": record["trace"],
                "chunks": list(record["chunks"]),
            },
        )
    return [by_id[key] for key in sorted(by_id) if by_id[key]["gt_answer"]]


def select_problems(
    source: str,
    records: Sequence[dict[str, Any]] = (),
    selected: Sequence[dict[str, Any]] = (),
    accuracy_min: float = 0.0,
    accuracy_max: float = 1.0,
    n_problems: int | None = None,
    prefix: str = "none",
) -> list[dict[str, Any]]:
    """The problems of an accuracy experiment as ``{problem, problem_text, gt_answer, level}``
    (records also give ``trace`` and ``chunks``).

    ``records``: trace records (one entry per distinct problem, sorted by id, the correct trace
    preferred); ``selected``: the ``selected_problems.json`` list, filtered to
    ``accuracy_min <= accuracy <= accuracy_max`` with a gold answer, in list order.
    ``prefix="reasoning"`` needs the records' sentences. The first ``n_problems`` are kept;
    fewer than asked is an error.
    """
    if prefix not in PROBLEM_PREFIXES:
        raise ValueError(f"unknown problem prefix {prefix!r}; expected one of {PROBLEM_PREFIXES}")
    if source == "records":
        problems = _record_problems(records)
    elif source == "selected":
        if prefix != "none":
            raise ValueError("a reasoning prefix needs problems.source 'records' (their traces)")
        problems = [
            {
                "problem": int(entry["problem_idx"].removeprefix("problem_")),
                "problem_text": entry["problem"],
                "gt_answer": entry["gt_answer"],
                "level": entry.get("level", ""),
            }
            for entry in selected
            if entry.get("gt_answer") and accuracy_min <= entry["accuracy"] <= accuracy_max
        ]
    else:
        raise ValueError(f"unknown problem source {source!r}; expected 'records' or 'selected'")
    if n_problems is not None:
        if len(problems) < n_problems:
            raise ValueError(f"only {len(problems)} problems qualify, {n_problems} requested")
        problems = problems[:n_problems]
    if not problems:
        raise ValueError("no problems with a gold answer to generate from")
    return problems


def problem_prompt(
    problem: Mapping[str, Any], prompt_format: str, tokenizer: Any, prefix: str
) -> str:
    """The prompt of a problem, followed by its trace's sentences when ``prefix`` is
    ``reasoning`` (the model then only has to close its thinking and answer)."""
    base = build_prompt(problem["problem_text"], prompt_format, tokenizer)
    if prefix == "reasoning":
        return base + prefix_text(problem["chunks"], len(problem["chunks"]))
    return base


def problem_items(
    problems: Sequence[dict[str, Any]],
    prompts: Sequence[str],
    samples_per_problem: int,
    seed_parts: Sequence[Any],
    patch_spans: Sequence[tuple[int, int] | None] | None = None,
) -> list[GenerationItem]:
    """``samples_per_problem`` items per problem, id ``"{problem}/{sample}"``, seeded by
    ``stable_seed(*seed_parts, problem, sample)``; ``patch_spans``: one per problem."""
    spans = patch_spans if patch_spans is not None else [None] * len(problems)
    return [
        GenerationItem(
            f"{problem['problem']}/{sample}",
            prompt,
            stable_seed(*seed_parts, problem["problem"], sample),
            {
                "problem": problem["problem"],
                "sample": sample,
                "gt_answer": problem["gt_answer"],
                "level": problem.get("level", ""),
                **({"patch_span": list(span)} if span is not None else {}),
            },
        )
        for problem, prompt, span in zip(problems, prompts, spans, strict=True)
        for sample in range(samples_per_problem)
    ]


def experiment_items(
    experiment: str,
    params: Mapping[str, Any],
    condition: str,
    tokenizer: Any,
    records: Sequence[dict[str, Any]] = (),
    selected: Sequence[dict[str, Any]] = (),
    rollouts: str | None = None,
    condition_spec: Mapping[str, Any] | None = None,
) -> list[GenerationItem]:
    """Every item of one (experiment, condition), before sharding.

    ``params``: the generation params of the rule (shared decoding keys, ``problems`` and the
    experiment's own section). Accuracy experiments sample problems; ``patching`` samples them
    with the condition's sentence (``condition_spec["sentences"][trace]``) marked for the
    patch; ``counterfactual`` resamples every sentence prefix of the configured traces.
    """
    settings = params["experiment"]
    seed_parts = (params["seed"], experiment) + (() if params["paired_seeds"] else (condition,))
    if experiment == "counterfactual":
        from anchorflow.counterfactual import analysed_sentences, resample_items

        by_trace = {rec["trace"]: rec for rec in records if rec["rollouts"] == rollouts}
        items: list[GenerationItem] = []
        for trace in settings["traces"]:
            if trace not in by_trace:
                raise ValueError(
                    f"counterfactual trace {trace!r} is not among the acquired "
                    f"traces of {rollouts!r}"
                )
            record = by_trace[trace]
            base = build_prompt(record["problem_text"], params["prompt_format"], tokenizer)
            n_sentences = analysed_sentences(len(record["chunks"]), settings["max_sentences"])
            items += resample_items(
                trace,
                record["chunks"],
                base,
                n_sentences,
                settings["n_resamples"],
                seed_parts,
                gt_answer=record["gt_answer"],
            )
        return items
    problem_settings = params["problems"]
    prefix = "reasoning" if experiment == "patching" else problem_settings["prefix"]
    problems = select_problems(
        problem_settings["source"],
        [record for record in records if rollouts is None or record["rollouts"] == rollouts],
        selected,
        problem_settings["accuracy_min"],
        problem_settings["accuracy_max"],
        problem_settings["n_problems"],
        prefix,
    )
    prompts = [
        problem_prompt(problem, params["prompt_format"], tokenizer, prefix) for problem in problems
    ]
    spans = None
    if experiment == "patching":
        sentences = (condition_spec or {}).get("sentences", {})
        spans = [
            sentence_span(
                build_prompt(problem["problem_text"], params["prompt_format"], tokenizer),
                problem["chunks"],
                sentences[problem["trace"]],
            )
            if problem["trace"] in sentences
            else None
            for problem in problems
        ]
    return problem_items(problems, prompts, settings["samples_per_problem"], seed_parts, spans)
