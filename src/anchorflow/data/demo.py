"""A synthetic math-rollouts dataset for the embedded demo, deterministic from a seed.

It is written in the exact layout and schema of ``uzaymacar/math-rollouts`` (method reference
§2.3–§2.4): ``{rollouts}/temperature_0.6_top_p_0.95/{correct,incorrect}_base_solution/
problem_{N}/{problem,base_solution,chunks,chunks_labeled}.json``, so the demo is read by the same
acquisition code as the real data. Traces mix plan, uncertainty ("Wait, ..."), computation, fact,
checking and consolidation sentences, labelled with the dataset's ``function_tags``.

Every answer is one digit, and every trace has one **anchor** sentence, early on, that states
its result as a number word ("That leaves seven marbles in the crate."). No other sentence
uses a number word, so the demo model's planted head (``anchorflow.models.demo``) can find the
anchor and copy its digit into ``\\boxed{}``: the planted answer of the intervention stage.

Regenerate the committed copy with ``python -m anchorflow.data.demo demo/math-rollouts``.
"""

from __future__ import annotations

import argparse
import random
from dataclasses import dataclass
from pathlib import Path

from anchorflow.io import write_json
from anchorflow.sentences import DATASET_MIN_CHUNK_CHARS, split_solution

ROLLOUTS = "demo-r1-distill"
SAMPLING_FOLDER = "temperature_0.6_top_p_0.95"
PROMPT_TEMPLATE = (
    "Solve this math problem step by step. You MUST put your final answer in \\boxed{{}}. "
    "Problem: {problem} Solution: \n<think>\n"
)
METRICS = (
    "accuracy",
    "resampling_importance_accuracy",
    "resampling_importance_kl",
    "counterfactual_importance_accuracy",
    "counterfactual_importance_kl",
    "forced_importance_accuracy",
    "forced_importance_kl",
    "different_trajectories_fraction",
    "overdeterminedness",
)


@dataclass(frozen=True)
class DemoProblem:
    """One synthetic problem: ``a`` items of ``b`` each, then ``c`` removed; MATH level
    ``level``."""

    number: int
    a: int
    b: int
    c: int
    level: int

    @property
    def answer(self) -> int:
        return self.a * self.b - self.c

    @property
    def text(self) -> str:
        return (
            f"A crate holds {self.a} boxes with {self.b} marbles in each box. "
            f"If {self.c} marbles are removed, how many marbles remain?"
        )


PLANS = (
    "First, I need to find the total number of marbles in all the boxes.",
    "Let me plan this: multiply the boxes by the marbles per box, then subtract.",
    "Alternatively, I could add the marbles box by box and then remove the extra marbles.",
    "Alternatively, maybe I should count the removed marbles first and work backwards.",
    "So the plan is to compute the product and then take away the removed marbles.",
)
UNCERTAINTY = (
    "Wait, did the problem say the marbles were removed from a single box or from the whole crate?",
    "Wait, I should double check whether I multiplied the right numbers.",
    "Wait, maybe I misread how many boxes there are in the crate.",
    "Hmm, wait, that does not look right, so let me reconsider the subtraction.",
    "Wait, let me make sure the question asks for the marbles that remain.",
)
FACTS = (
    "The crate has {a} boxes and each box has {b} marbles.",
    "Multiplication gives the total when every group has the same size.",
    "The problem says that {c} marbles are removed in total.",
    "Removing marbles means the total goes down by that amount.",
)
COMPUTATIONS = (
    "So {a} times {b} equals {ab} marbles in total.",
    "Then {ab} minus {c} gives {answer} marbles.",
    "Splitting it up, {a} times {b_low} is {ab_low} and {a} times {b_high} is {ab_high}.",
    "Adding {ab_low} and {ab_high} gives {ab} again.",
    "Taking away {c} from {ab} leaves {answer}.",
)
CHECKS = (
    "Let me verify: {answer} plus {c} is {ab}, which matches the product.",
    "Checking again, {ab} divided by {b} is {a}, so the product is right.",
    "Let me check the subtraction again: {ab} minus {c} is {answer}.",
)
CONSOLIDATIONS = (
    "So far I have {ab} marbles before removal and {answer} after.",
    "Putting it together, the crate ends up with {answer} marbles.",
)
CATEGORY_TEMPLATES = {
    "plan_generation": PLANS,
    "uncertainty_management": UNCERTAINTY,
    "fact_retrieval": FACTS,
    "active_computation": COMPUTATIONS,
    "self_checking": CHECKS,
    "result_consolidation": CONSOLIDATIONS,
}
SETUP = "Okay, so I need to figure out how many marbles remain in the crate after some are taken."
FINAL = "Therefore, the final answer is {answer} marbles."
ANCHOR = "That leaves {word} marbles in the crate."
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


DEMO_PROBLEM_NUMBERS = (101, 102, 103, 104, 105)


def demo_problems(seed: int, numbers: tuple[int, ...] = DEMO_PROBLEM_NUMBERS) -> list[DemoProblem]:
    """The demo problems, deterministic from ``seed``."""
    rng = random.Random(seed)
    problems = []
    for index, number in enumerate(numbers):
        a, b = rng.randint(2, 6), rng.randint(3, 9)
        answer = rng.randint(1, 9)
        problems.append(DemoProblem(number, a, b, a * b - answer, level=1 + index % 3))
    return problems


def _fill(template: str, problem: DemoProblem, answer: int) -> str:
    b_low = problem.b // 2
    b_high = problem.b - b_low
    ab = problem.a * problem.b
    return template.format(
        a=problem.a,
        b=problem.b,
        c=problem.c,
        ab=ab,
        answer=answer,
        b_low=b_low,
        b_high=b_high,
        ab_low=problem.a * b_low,
        ab_high=problem.a * b_high,
    )


def _sentences(
    problem: DemoProblem, correct: bool, rng: random.Random
) -> tuple[list[tuple[str, str]], int]:
    """``(category, sentence)`` pairs of one trace and the answer it reaches."""
    answer = problem.answer
    if not correct:
        answer += -1 if answer == 9 or (answer > 1 and rng.random() < 0.5) else 1
    target = rng.randint(22, 56)
    anchor_index = rng.randint(3, 6)
    categories = list(CATEGORY_TEMPLATES)
    weights = (3, 2, 2, 5, 2, 1)
    pairs = [("problem_setup", SETUP)]
    while len(pairs) < target:
        if len(pairs) == anchor_index:
            pairs.append(("result_consolidation", ANCHOR.format(word=NUMBER_WORDS[answer])))
            continue
        category = rng.choices(categories, weights=weights)[0]
        template = rng.choice(CATEGORY_TEMPLATES[category])
        pairs.append((category, _fill(template, problem, answer)))
    pairs.append(("final_answer_emission", FINAL.format(answer=answer)))
    return pairs, answer


def _trace_text(pairs: list[tuple[str, str]], rng: random.Random) -> str:
    text = ""
    for index, (_, sentence) in enumerate(pairs):
        if index:
            text += "\n\n" if rng.random() < 0.35 else " "
        text += sentence
    return text


def _metric_values(category: str, rng: random.Random, anchor: bool) -> dict[str, float]:
    """Black-box values of one chunk. The anchor's importances (every ``*_importance_*``) are
    planted above every other sentence's (1.2-1.36 against at most 1.0): the demo's known
    black-box answer, which the white-box / black-box validation must find."""
    boost = 0.4 if category in ("plan_generation", "uncertainty_management") else 0.0
    accuracy = round(rng.uniform(0.2, 0.9), 3)
    values = {name: round(rng.uniform(-0.2, 0.6) + boost, 6) for name in METRICS}
    values["accuracy"] = accuracy
    values["different_trajectories_fraction"] = round(rng.uniform(0.0, 1.0), 6)
    values["overdeterminedness"] = round(rng.uniform(0.0, 1.0), 6)
    if anchor:
        for name in METRICS:
            if "_importance_" in name:
                values[name] = round(1.2 + abs(values[name]) / 5, 6)
    return values


def write_demo_dataset(root: str | Path, seed: int = 0) -> list[Path]:
    """Write the demo dataset under ``root``; return the problem folders written."""
    root = Path(root)
    folders: list[Path] = []
    for problem in demo_problems(seed):
        for correctness in ("correct", "incorrect"):
            rng = random.Random(f"{seed}-{problem.number}-{correctness}")
            pairs, answer = _sentences(problem, correctness == "correct", rng)
            reasoning = _trace_text(pairs, rng)
            solution = (
                f"{reasoning}\n</think>\n\nThe crate has {answer} marbles left. "
                f"The answer is \\boxed{{{answer}}}."
            )
            prompt = PROMPT_TEMPLATE.format(problem=problem.text)
            full_cot = prompt + solution
            chunks = split_solution(full_cot)
            categories = [category for category, _ in pairs]
            if len(chunks) != len(categories):
                raise AssertionError("demo sentences must split one-to-one")
            folder = (
                root
                / ROLLOUTS
                / SAMPLING_FOLDER
                / f"{correctness}_base_solution"
                / f"problem_{problem.number}"
            )
            write_json(
                folder / "problem.json",
                {
                    "problem": problem.text,
                    "level": f"Level {problem.level}",
                    "type": "Prealgebra",
                    "gt_solution": f"There are {problem.a * problem.b} marbles, "
                    f"so \\boxed{{{problem.answer}}} remain.",
                    "gt_answer": str(problem.answer),
                    "nickname": "Marbles in crates",
                },
            )
            write_json(
                folder / "base_solution.json",
                {
                    "prompt": prompt,
                    "solution": solution,
                    "full_cot": full_cot,
                    "answer": str(answer),
                    "is_correct": correctness == "correct",
                },
            )
            if problem.number % 2:
                write_json(
                    folder / "chunks.json",
                    {"source_text": full_cot, "solution_text": reasoning, "chunks": chunks},
                )
            anchor = ANCHOR.format(word=NUMBER_WORDS[answer])
            labeled = []
            for index, (chunk, category) in enumerate(zip(chunks, categories, strict=True)):
                if len(chunk) < DATASET_MIN_CHUNK_CHARS:
                    continue
                depends = sorted(rng.sample(range(index), k=min(index, rng.randint(0, 2))))
                labeled.append(
                    {
                        "chunk": chunk,
                        "chunk_idx": index,
                        "function_tags": [category],
                        "depends_on": [str(value) for value in depends],
                        **_metric_values(category, rng, chunk.strip() == anchor),
                        "summary": category.replace("_", " "),
                    }
                )
            write_json(folder / "chunks_labeled.json", labeled)
            folders.append(folder)
    return folders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="folder to write the dataset into")
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args()
    folders = write_demo_dataset(arguments.root, arguments.seed)
    print(f"wrote {len(folders)} traces under {arguments.root}")


if __name__ == "__main__":
    main()
