"""The generation items of an experiment's condition: which problems, prompts, samples and seeds
(amplification, ablation, patching, counterfactual resampling)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from anchorflow.data.problem_sets import record_problems
from anchorflow.interventions.attention_conditions import SENTENCE_EXPERIMENTS
from anchorflow.interventions.counterfactual import analysed_sentences, resample_items
from anchorflow.interventions.decode import GenerationItem
from anchorflow.interventions.heads import stable_seed
from anchorflow.interventions.prompts import (
    build_prompt,
    prefix_text,
    problem_prompt,
    sentence_span,
)
from anchorflow.interventions.scoring import opens_thinking


def problem_items(
    problems: Sequence[dict[str, Any]],
    prompts: Sequence[str],
    samples_per_problem: int,
    seed_parts: Sequence[Any],
    patch_spans: Sequence[tuple[int, int] | None] | None = None,
    answer_cue: str = "",
    attention_spans: Mapping[str, Sequence[tuple[int, int] | None]] | None = None,
) -> list[GenerationItem]:
    """``samples_per_problem`` items per problem, id ``"{problem}/{sample}"``, seeded by
    ``stable_seed(*seed_parts, problem, sample)``; ``patch_spans``: one per problem (its noise
    seeded per problem, so a problem's samples share one prefill); ``answer_cue``: the end of
    every prompt that opens the answer (recorded for the scorer); ``attention_spans``: per meta
    key (``attention_span``, ``attention_target``) one character span per problem."""
    spans = patch_spans if patch_spans is not None else [None] * len(problems)
    cue = {"answer_cue": answer_cue} if answer_cue else {}
    edits = [
        {
            key: list(chosen[index])
            for key, chosen in (attention_spans or {}).items()
            if chosen[index] is not None
        }
        for index in range(len(problems))
    ]
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
                "thinks": opens_thinking(prompt),
                **cue,
                **edit,
                **(
                    {
                        "patch_span": list(span),
                        "patch_seed": stable_seed(*seed_parts, problem["problem"]),
                    }
                    if span is not None
                    else {}
                ),
            },
        )
        for problem, prompt, span, edit in zip(problems, prompts, spans, edits, strict=True)
        for sample in range(samples_per_problem)
    ]


CONTROL_KINDS = ("random", "control")
# Experiments whose prompts are a trace (problem + reasoning + cue) and its chosen sentences.
TRACE_EXPERIMENTS = ("patching", *SENTENCE_EXPERIMENTS)
# The item meta key of each attention span and the condition field naming its sentence.
ATTENTION_SPANS = {"attention_span": "sentences", "attention_target": "targets"}


def samples_per_problem(settings: Mapping[str, Any], condition_spec: Mapping[str, Any]) -> int:
    """Samples per problem of a condition: ``random_samples_per_problem`` for the random-head
    and control-sentence draws when set (their first samples, paired with the receivers'),
    else ``samples_per_problem``."""
    fewer = settings.get("random_samples_per_problem")
    if fewer is not None and condition_spec.get("kind") in CONTROL_KINDS:
        return min(fewer, settings["samples_per_problem"])
    return settings["samples_per_problem"]


def patching_problems(
    records: Sequence[Mapping[str, Any]], traces: Sequence[str] | None
) -> list[dict[str, Any]]:
    """The problems whose traces are patched: each problem's correct trace, or exactly the
    named ``traces`` (in that order)."""
    if traces is None:
        return record_problems(records)
    by_trace = {record["trace"]: record for record in records}
    unknown = [trace for trace in traces if trace not in by_trace]
    if unknown:
        raise ValueError(f"patching traces {unknown} are not among the acquired traces")
    return [record_problems([by_trace[trace]])[0] for trace in traces]


def experiment_items(
    experiment: str,
    params: Mapping[str, Any],
    condition: str,
    tokenizer: Any,
    problems: Sequence[dict[str, Any]] = (),
    records: Sequence[dict[str, Any]] = (),
    rollouts: str | None = None,
    condition_spec: Mapping[str, Any] | None = None,
) -> list[GenerationItem]:
    """Every item of one (experiment, condition), before sharding.

    ``params``: the generation params of the rule (shared decoding keys, ``problems`` and the
    experiment's own section); ``problems``: the chosen problems of the accuracy experiments.
    ``patching`` samples the records' traces with the condition's sentence
    (``condition_spec["sentences"][trace]``) marked for the patch; ``counterfactual``
    resamples every sentence prefix of the configured traces.
    """
    settings = params["experiment"]
    spec = condition_spec or {}
    instruction = params.get("instruction")
    seed_parts = (params["seed"], experiment) + (() if params["paired_seeds"] else (condition,))
    own_records = [r for r in records if rollouts is None or r["rollouts"] == rollouts]
    if experiment == "counterfactual":
        by_trace = {rec["trace"]: rec for rec in own_records}
        items: list[GenerationItem] = []
        for trace in settings["traces"]:
            if trace not in by_trace:
                raise ValueError(
                    f"counterfactual trace {trace!r} is not among the acquired "
                    f"traces of {rollouts!r}"
                )
            record = by_trace[trace]
            base = build_prompt(
                record["problem_text"], params["prompt_format"], tokenizer, instruction
            )
            n_sentences = analysed_sentences(len(record["chunks"]), settings["max_sentences"])
            items += resample_items(
                trace,
                record["chunks"],
                base,
                n_sentences,
                settings["n_resamples"],
                seed_parts,
                gt_answer=record["gt_answer"],
                answer_cue=settings.get("answer_cue") or "",
            )
        return items
    n_samples = samples_per_problem(settings, spec)
    if experiment in TRACE_EXPERIMENTS:
        chosen = patching_problems(own_records, settings.get("traces"))
        cue = settings.get("answer_cue") or ""
        prompts, spans = [], {key: [] for key in ("patch_span", *ATTENTION_SPANS)}
        for problem in chosen:
            base = build_prompt(
                problem["problem_text"], params["prompt_format"], tokenizer, instruction
            )
            prompts.append(base + prefix_text(problem["chunks"], len(problem["chunks"])) + cue)
            for key, field in zip(spans, ("sentences", *ATTENTION_SPANS.values()), strict=True):
                index = spec.get(field, {}).get(problem["trace"])
                spans[key].append(
                    None if index is None else sentence_span(base, problem["chunks"], index)
                )
        patch_spans = spans.pop("patch_span") if experiment == "patching" else None
        edits = None if experiment == "patching" else spans
        return problem_items(chosen, prompts, n_samples, seed_parts, patch_spans, cue, edits)
    prefix = params["problems"]["prefix"]
    prompts = [
        problem_prompt(problem, params["prompt_format"], tokenizer, prefix, instruction)
        for problem in problems
    ]
    return problem_items(problems, prompts, n_samples, seed_parts)
