"""Suppressing only the receiver heads: the KL at a trace's final position when its highest- or
lowest-scoring sentence is hidden from them (cf. ARENA's 217x example).

The KL is the full-vocabulary one, as ARENA's: at a single position the nucleus emulation's -1e9
fill makes any token that leaves the baseline's nucleus dominate the value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch

from anchorflow.suppression.attention import HeadSelection
from anchorflow.suppression.divergence import KLSettings
from anchorflow.suppression.matrix import (
    cut_trace,
    extreme_sentences,
    suppression_matrix,
    trace_inputs,
)


def final_position_kl(
    model: torch.nn.Module,
    tokenizer: Any,
    heads: HeadSelection,
    record: Mapping[str, Any],
    tokens: Mapping[str, Any],
    receiver_score: np.ndarray,
    settings: Mapping[str, Any],
) -> list[dict[str, Any]]:
    """One row per extreme sentence (``highest``, ``lowest`` finite ``receiver_score [n]``) of a
    trace: ``trace, which, sentence, receiver_score, final_position_kl, n_tokens``, the KL at
    the last position when ``heads`` alone cannot attend to the sentence. ``settings``:
    ``temperature``, ``max_tokens``, ``batch_size``, ``query_block``."""
    full_ids, full_spans = trace_inputs(tokenizer, dict(record), dict(tokens))
    ids, spans = cut_trace(full_ids, full_spans, settings["max_tokens"], model.device)
    n_tokens = len(ids)
    chosen = extreme_sentences(receiver_score, (spans[:, 0] >= 1) & (spans[:, 0] < n_tokens))
    result = suppression_matrix(
        model,
        ids,
        spans,
        KLSettings("full", settings["temperature"]),
        heads=heads,
        sentences=list(chosen.values()),
        batch_size=settings["batch_size"],
        query_block=settings["query_block"],
    )
    return [
        {
            "trace": record["trace"],
            "which": which,
            "sentence": sentence,
            "receiver_score": float(receiver_score[sentence]),
            "final_position_kl": float(result.token_kl[sentence, n_tokens - 1]),
            "n_tokens": n_tokens,
        }
        for which, sentence in chosen.items()
    ]


def with_high_low_ratio(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The rows of :func:`final_position_kl` as a table, with each trace's
    ``highest_over_lowest`` ratio of final-position KLs."""
    table = pd.DataFrame(rows)
    kl = table.pivot(index="trace", columns="which", values="final_position_kl")
    table["highest_over_lowest"] = table["trace"].map(kl["highest"] / kl["lowest"])
    return table
