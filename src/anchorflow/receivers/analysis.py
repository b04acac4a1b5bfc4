"""The receiver-head analysis of a set of traces (Figure 4) and its result tables."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from anchorflow.receivers.heads import (
    head_kurtosis,
    mean_kurtosis,
    receiver_scores,
    top_receiver_heads,
)
from anchorflow.receivers.reliability import (
    bootstrap_top_k_jaccard,
    reliability_order,
    split_half_reliability,
)


@dataclass(frozen=True)
class ReceiverAnalysis:
    """Receiver-head statistics of one model over its traces (in :func:`reliability_order`).

    ``kurtosis`` is ``[traces, layers, heads]``, ``mean_kurtosis`` ``[layers, heads]``,
    ``heads`` int ``[k, 2]`` (layer, head) best first, ``jaccard`` ``[n_bootstrap]``.
    """

    traces: list[str]
    kurtosis: np.ndarray
    mean_kurtosis: np.ndarray
    heads: np.ndarray
    reliability: dict[str, float | int]
    jaccard: np.ndarray


def analyse_receivers(
    vertical: dict[str, np.ndarray],
    top_k: int = 20,
    exclude_layer0: bool = True,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> ReceiverAnalysis:
    """Kurtosis, top-k heads, split-half reliability and bootstrap stability.

    ``vertical`` maps each trace id to its vertical scores ``[layers, heads, n_sentences]``;
    every trace must have the same ``[layers, heads]``.
    """
    if len(vertical) < 2:
        raise ValueError(f"receiver-head analysis needs >= 2 traces, got {len(vertical)}")
    traces = reliability_order(list(vertical))
    shapes = {trace: np.shape(vertical[trace])[:2] for trace in traces}
    if len(set(shapes.values())) != 1 or any(np.ndim(vertical[t]) != 3 for t in traces):
        raise ValueError(f"vertical scores must all be [layers, heads, n]; got shapes {shapes}")
    kurtosis = np.stack([head_kurtosis(vertical[trace]) for trace in traces])
    means = mean_kurtosis(kurtosis)
    return ReceiverAnalysis(
        traces=traces,
        kurtosis=kurtosis,
        mean_kurtosis=means,
        heads=top_receiver_heads(means, top_k, exclude_layer0),
        reliability=split_half_reliability(kurtosis),
        jaccard=bootstrap_top_k_jaccard(kurtosis, top_k, exclude_layer0, n_bootstrap, seed),
    )


def kurtosis_table(analysis: ReceiverAnalysis) -> pd.DataFrame:
    """Per-trace kurtosis, long format: columns ``layer, head, trace, kurtosis``."""
    n_traces, layers, heads = analysis.kurtosis.shape
    layer, head = np.indices((layers, heads))
    return pd.DataFrame(
        {
            "layer": np.tile(layer.ravel(), n_traces),
            "head": np.tile(head.ravel(), n_traces),
            "trace": np.repeat(analysis.traces, layers * heads),
            "kurtosis": analysis.kurtosis.reshape(-1),
        }
    )


def kurtosis_array(table: pd.DataFrame, traces: list[str]) -> np.ndarray:
    """Inverse of :func:`kurtosis_table`: ``[len(traces), layers, heads]`` in the given order."""
    layers, heads = int(table["layer"].max()) + 1, int(table["head"].max()) + 1
    out = np.full((len(traces), layers, heads), np.nan)
    position = {trace: index for index, trace in enumerate(traces)}
    missing = sorted(set(table["trace"]) ^ set(traces))
    if missing:
        raise ValueError(f"kurtosis table and trace list differ in traces {missing[:10]}")
    rows = table["trace"].map(position).to_numpy()
    out[rows, table["layer"].to_numpy(), table["head"].to_numpy()] = table["kurtosis"]
    return out


def receiver_heads_table(analysis: ReceiverAnalysis) -> pd.DataFrame:
    """The top-k heads: columns ``rank, layer, head, mean_kurtosis`` (rank 1 = highest)."""
    layer, head = analysis.heads[:, 0], analysis.heads[:, 1]
    return pd.DataFrame(
        {
            "rank": np.arange(1, len(layer) + 1),
            "layer": layer,
            "head": head,
            "mean_kurtosis": analysis.mean_kurtosis[layer, head],
        }
    )


def reliability_table(
    analysis: ReceiverAnalysis, top_k: int, exclude_layer0: bool, seed: int
) -> pd.DataFrame:
    """One row: split-half r, p and head counts, bootstrap Jaccard summary, the trace order."""
    jaccard_values = analysis.jaccard
    row = dict(analysis.reliability)
    row.update(
        {
            "top_k": top_k,
            "exclude_layer0": exclude_layer0,
            "bootstrap_jaccard_mean": float(jaccard_values.mean()),
            "bootstrap_jaccard_sd": float(jaccard_values.std(ddof=1))
            if jaccard_values.size > 1
            else float("nan"),
            "bootstrap_jaccard_q025": float(np.quantile(jaccard_values, 0.025)),
            "bootstrap_jaccard_q975": float(np.quantile(jaccard_values, 0.975)),
            "n_bootstrap": int(jaccard_values.size),
            "seed": seed,
            "trace_order": ",".join(analysis.traces),
        }
    )
    return pd.DataFrame([row])


def receiver_score_table(
    analysis: ReceiverAnalysis,
    vertical: dict[str, np.ndarray],
    chunk_indices: dict[str, list[int]],
) -> pd.DataFrame:
    """Per-sentence receiver-head scores: columns ``trace, sentence, chunk_idx, receiver_score``.

    ``chunk_indices[trace]`` is the sentences file's ``chunk_idx`` list; its length must equal
    the trace's number of sentences.
    """
    frames = []
    for trace in analysis.traces:
        scores = receiver_scores(vertical[trace], analysis.heads)
        chunks = list(chunk_indices[trace])
        if len(chunks) != scores.size:
            raise ValueError(
                f"{trace}: {scores.size} sentences in the vertical scores but "
                f"{len(chunks)} chunk_idx entries in the sentences file"
            )
        frames.append(
            pd.DataFrame(
                {
                    "trace": trace,
                    "sentence": np.arange(scores.size),
                    "chunk_idx": np.asarray(chunks, dtype=np.int64),
                    "receiver_score": scores,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def receiver_summary(
    analysis: ReceiverAnalysis, reliability: pd.DataFrame, model: str, params: dict
) -> dict:
    """The ``summary.json`` of a receiver-head analysis: traces, shape, top heads, reliability
    (NaN as null), the count of NaN kurtosis values outside layer 0, and ``params``."""
    return {
        "model": model,
        "traces": analysis.traces,
        "shape": {"layers": analysis.kurtosis.shape[1], "heads": analysis.kurtosis.shape[2]},
        "heads": analysis.heads.tolist(),
        "reliability": {
            key: None if isinstance(value, float) and math.isnan(value) else value
            for key, value in reliability.to_dict(orient="records")[0].items()
        },
        "n_nan_kurtosis_layers_ge1": int(np.isnan(analysis.kurtosis[:, 1:]).sum()),
        "params": params,
    }
