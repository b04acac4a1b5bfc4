"""Agreement of two label sets on first tags: Cohen's kappa, confusion matrix, precision/recall.

The reference set is the dataset's labels, the other Claude's; chunks are matched by
``chunk_idx`` and a chunk missing from either side is counted, never silently dropped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics

from anchorflow.taxonomy import TAGS


def cohen_kappa(reference: Sequence[str], other: Sequence[str]) -> float:
    """Cohen's kappa of two equally long label sequences (1 = perfect, 0 = chance).

    ``sklearn.metrics.cohen_kappa_score``, except that two raters who both use one single
    category agree perfectly (1.0; sklearn's 0/0 gives NaN)."""
    if len(reference) != len(other) or not reference:
        raise ValueError("kappa needs two non-empty label sequences of equal length")
    if len(set(reference) | set(other)) == 1:
        return 1.0
    return float(metrics.cohen_kappa_score(reference, other))


def paired_first_tags(
    reference_docs: Sequence[Mapping[str, Any]], other_docs: Sequence[Mapping[str, Any]]
) -> tuple[pd.DataFrame, dict[str, int]]:
    """First tags of chunks labelled in both sets (``trace, chunk_idx, reference, other``) and
    counts of chunks found on one side only."""
    rows, only_reference, only_other = [], 0, 0
    others = {(doc["rollouts"], doc["trace"]): doc for doc in other_docs}
    for doc in reference_docs:
        other = others.pop((doc["rollouts"], doc["trace"]), {"chunks": []})
        theirs = {chunk["chunk_idx"]: chunk for chunk in other["chunks"]}
        for chunk in doc["chunks"]:
            match = theirs.pop(chunk["chunk_idx"], None)
            if match is None:
                only_reference += 1
                continue
            rows.append(
                {
                    "trace": doc["trace"],
                    "chunk_idx": chunk["chunk_idx"],
                    "reference": chunk["function_tags"][0],
                    "other": match["function_tags"][0],
                }
            )
        only_other += len(theirs)
    only_other += sum(len(doc["chunks"]) for doc in others.values())
    return pd.DataFrame(rows), {"only_reference": only_reference, "only_other": only_other}


def per_category(pairs: pd.DataFrame) -> pd.DataFrame:
    """Precision, recall and F1 of ``other`` against ``reference`` for every tag
    (``sklearn.metrics.precision_recall_fscore_support``): precision is NaN for a tag never
    predicted, recall for a tag never in the reference, F1 for a tag on neither side; a tag on
    one side only has F1 = 0 (``2 TP / (2 TP + FP + FN)``)."""
    precision, recall, f1, support = metrics.precision_recall_fscore_support(
        pairs["reference"], pairs["other"], labels=list(TAGS), zero_division=np.nan
    )
    predicted = pairs["other"].value_counts().reindex(TAGS, fill_value=0)
    return pd.DataFrame(
        {
            "category": TAGS,
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "support_reference": support,
            "support_other": predicted.to_numpy(),
        }
    )


def confusion_frame(pairs: pd.DataFrame) -> pd.DataFrame:
    """Tidy confusion counts over all tags: ``reference, other, count, row_fraction``."""
    matrix = metrics.confusion_matrix(pairs["reference"], pairs["other"], labels=list(TAGS))
    totals = matrix.sum(axis=1, keepdims=True)
    fractions = np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)
    return pd.DataFrame(
        [
            {
                "reference": ref,
                "other": oth,
                "count": int(matrix[i, j]),
                "row_fraction": float(fractions[i, j]),
            }
            for i, ref in enumerate(TAGS)
            for j, oth in enumerate(TAGS)
        ]
    )


def write_agreement_report(
    records: Sequence[Mapping[str, Any]],
    anthropic_docs: Sequence[Mapping[str, Any]],
    outputs: Mapping[str, str],
    title: str,
) -> dict[str, Any]:
    """Compare Claude's labels with the dataset's for ``records``; write ``outputs``
    (``png``, ``pdf``, ``data``, ``per_category``, ``kappa``); return the kappa summary."""
    from anchorflow.io import write_json, write_tsv
    from anchorflow.labels.dataset import dataset_label_document
    from anchorflow.plots.labels import plot_confusion

    dataset_docs = [dataset_label_document(record, {"source": "dataset"}) for record in records]
    pairs, unmatched = paired_first_tags(dataset_docs, anthropic_docs)
    kappa = cohen_kappa(list(pairs["reference"]), list(pairs["other"]))
    summary = {
        "cohen_kappa_first_tag": kappa,
        "accuracy_first_tag": float((pairs["reference"] == pairs["other"]).mean()),
        "n_chunks": len(pairs),
        "n_traces": len(dataset_docs),
        "n_only_dataset": unmatched["only_reference"],
        "n_only_anthropic": unmatched["only_other"],
        "models": sorted({str(doc["model"]) for doc in anthropic_docs}),
        "prompt_versions": sorted({str(doc["prompt_version"]) for doc in anthropic_docs}),
    }
    plot_confusion(
        confusion_frame(pairs), kappa, title, outputs["png"], outputs["pdf"], outputs["data"]
    )
    write_tsv(outputs["per_category"], per_category(pairs))
    write_json(outputs["kappa"], summary)
    return summary
