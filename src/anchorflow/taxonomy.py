"""The sentence taxonomy of Thought Anchors (method reference §4.1), in our own words."""

from __future__ import annotations

TAG_DEFINITIONS: dict[str, str] = {
    "problem_setup": (
        "Reads, restates or paraphrases the problem; first comprehension of what is asked."
    ),
    "plan_generation": (
        "Decides or announces what to do next; a strategy or approach (meta-reasoning)."
    ),
    "fact_retrieval": (
        "Recalls a fact, formula, definition or problem detail without computing with it."
    ),
    "active_computation": (
        "Carries out algebra, arithmetic or symbolic manipulation towards the answer."
    ),
    "result_consolidation": (
        "Collects or summarises intermediate results, or gets the final answer ready."
    ),
    "uncertainty_management": (
        "Voices doubt or confusion, re-evaluates, backtracks or proposes an alternative approach."
    ),
    "final_answer_emission": (
        "States the final (boxed) answer, or a sentence that already contains the final answer."
    ),
    "self_checking": (
        "Verifies earlier steps: re-derives, substitutes back, double-checks a result."
    ),
    "unknown": (
        "Fits none of the categories above, or is purely stylistic. Use only as a last resort."
    ),
}

TAGS: tuple[str, ...] = tuple(TAG_DEFINITIONS)
CATEGORIES: tuple[str, ...] = TAGS[:-1]
UNKNOWN = "unknown"
MIN_CHUNK_CHARS = 4
