"""Prompts for generation: the paper's template or a chat template, prefixes of a reasoning
trace and the character span of one of its sentences (method reference §2.2)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

PAPER_PROMPT = (
    "Solve this math problem step by step. You MUST put your final answer in \\boxed{}. "
    "Problem: {problem} Solution: \n<think>\n"
)


CHAT_INSTRUCTION = (
    "Solve this math problem step by step. You MUST put your final answer in \\boxed{}. "
    "Problem: {problem}"
)


PROMPT_FORMATS = ("raw", "chat")


def build_prompt(
    problem: str, prompt_format: str, tokenizer: Any = None, instruction: str | None = None
) -> str:
    """The prompt text: ``raw`` = the dataset's completion prompt (no chat template);
    ``chat`` = the instruction rendered with the tokenizer's chat template. ``instruction``
    replaces the format's default text; its ``{problem}`` is replaced by the problem (other
    braces, as in ``\\boxed{}``, are kept)."""
    if prompt_format not in PROMPT_FORMATS:
        raise ValueError(
            f"unknown prompt format {prompt_format!r}; expected one of {PROMPT_FORMATS}"
        )
    default = PAPER_PROMPT if prompt_format == "raw" else CHAT_INSTRUCTION
    text = (instruction or default).replace("{problem}", problem)
    if prompt_format == "raw":
        return text
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        raise ValueError("prompt format 'chat' needs a tokenizer with a chat template")
    messages = [{"role": "user", "content": text}]
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


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


def problem_prompt(
    problem: Mapping[str, Any],
    prompt_format: str,
    tokenizer: Any,
    prefix: str,
    instruction: str | None = None,
) -> str:
    """The prompt of a problem, followed by its trace's sentences when ``prefix`` is
    ``reasoning`` (the model then only has to close its thinking and answer)."""
    if prefix not in PROBLEM_PREFIXES:
        raise ValueError(f"unknown problem prefix {prefix!r}; expected one of {PROBLEM_PREFIXES}")
    base = build_prompt(problem["problem_text"], prompt_format, tokenizer, instruction)
    if prefix == "reasoning":
        return base + prefix_text(problem["chunks"], len(problem["chunks"]))
    return base
