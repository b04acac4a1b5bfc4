"""The trace explorer: static, self-contained HTML pages of a run (no network, no CDN).

``explorer/index.html`` lists every trace with its problem, correctness, model, sizes and top
anchors, the run's receiver heads, and links to the figures and intervention tables. One page
per (model, trace), ``explorer/traces/{model}/{trace}.html``, shows the trace's sentences
coloured by category, a selectable measure shaded on the text (missing values drawn as missing,
never as zero), sorting by any measure, a tooltip with every value and the sentence's
dependencies, the suppression matrix as a heatmap (hover shows both sentences) and the top
receiver heads' vertical-score curves. Data are embedded as JSON; the script is plain JavaScript
in the page.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from anchorflow.data.rollouts import read_records
from anchorflow.io import read_json, read_npz, read_tsv

# Measures a trace page can shade, in menu order: (key, label).
MEASURES = (
    ("receiver_score", "receiver-head score"),
    ("suppression_importance", "suppression importance"),
    ("counterfactual_importance_kl", "counterfactual importance (KL, dataset)"),
    ("resampling_importance_accuracy", "resampling importance (accuracy, dataset)"),
    ("ablation_importance_kl", "counterfactual importance under ablation (KL)"),
    ("ablation_change_kl", "change of counterfactual importance under ablation (KL)"),
    (
        "ablation_importance_kl_model_embeddings",
        "counterfactual importance under ablation (KL, model embeddings)",
    ),
)

# The per-sentence columns of the counterfactual stage a page shows: measure key -> (file,
# column); the receiver-ablation rows (kind receivers) of each file, keyed by chunk index.
ABLATION_COLUMNS = {
    "ablation_importance_kl": ("importance.tsv", "counterfactual_importance_kl"),
    "ablation_change_kl": ("changes.tsv", "change"),
    "ablation_importance_kl_model_embeddings": (
        "importance.tsv",
        "counterfactual_importance_kl_model_embeddings",
    ),
}


CATEGORY_COLOURS = {
    "problem_setup": "#7f7f7f",
    "plan_generation": "#d62728",
    "fact_retrieval": "#ff7f0e",
    "active_computation": "#2ca02c",
    "uncertainty_management": "#9467bd",
    "result_consolidation": "#1f77b4",
    "self_checking": "#8c564b",
    "final_answer_emission": "#e377c2",
    "unknown": "#bcbd22",
}


TOP_ANCHORS = 3

FIGURES = ("figure4", "figure5", "figure6", "suppression_grid", "whitebox_blackbox")

COUNTERFACTUAL_LINKS = (
    "by_category_box.png",
    "change_by_category.tsv",
    "top_changes.tsv",
    "dropdown_growth.tsv",
    "similarity_by_category.tsv",
)


CURVE_HEADS = 5


def rounded_number(value: Any, digits: int = 4) -> float | None:
    """A finite float rounded to ``digits`` significant digits, or None (missing)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number):
        return None
    return float(f"{number:.{digits}g}")


@dataclass
class TracePage:
    """Everything one trace page shows. ``measures[key]`` has one value (or None) per sentence;
    ``matrix`` is the suppression ``log_kl`` ``[n, n]`` (or None); ``curves`` maps a head name
    to its vertical scores ``[n]``."""

    model: str
    trace: str
    problem: str
    correct: bool
    n_tokens: int | None
    sentences: list[str]
    chunk_idx: list[int]
    categories: list[str]
    depends_on: list[list[int]]
    measures: dict[str, list[float | None]]
    matrix: list[list[float | None]] | None = None
    curves: dict[str, list[float | None]] = field(default_factory=dict)

    def top_anchors(self, count: int = TOP_ANCHORS) -> list[int]:
        """The sentences of highest receiver-head score (missing scores last)."""
        scores = self.measures.get("receiver_score", [])
        ranked = sorted(
            (index for index, value in enumerate(scores) if value is not None),
            key=lambda index: -scores[index],
        )
        return ranked[:count]

    def as_json(self) -> dict[str, Any]:
        labels = dict(MEASURES)
        return {
            "model": self.model,
            "trace": self.trace,
            "problem": self.problem,
            "correct": self.correct,
            "n_tokens": self.n_tokens,
            "sentences": [
                {
                    "index": index,
                    "chunk_idx": self.chunk_idx[index],
                    "text": text,
                    "category": self.categories[index],
                    "depends_on": self.depends_on[index],
                }
                for index, text in enumerate(self.sentences)
            ],
            "measures": [
                {"key": key, "label": labels[key], "values": values}
                for key, values in self.measures.items()
            ],
            "matrix": self.matrix,
            "curves": self.curves,
            "colours": CATEGORY_COLOURS,
        }


def per_sentence(values: Mapping[int, Any], n_sentences: int) -> list[float | None]:
    """``values`` keyed by sentence index as a list of ``n_sentences`` (None where absent)."""
    return [rounded_number(values.get(index)) for index in range(n_sentences)]


def by_chunk(values: Mapping[int, Any], chunk_idx: Sequence[int]) -> list[float | None]:
    """``values`` keyed by dataset ``chunk_idx`` as one value per sentence (None where absent)."""
    return [rounded_number(values.get(int(chunk))) for chunk in chunk_idx]


def matrix_json(matrix: np.ndarray | None) -> list[list[float | None]] | None:
    """A square matrix as nested lists with 3 significant digits, NaN as None."""
    if matrix is None:
        return None
    return [[rounded_number(value, 3) for value in row] for row in np.asarray(matrix)]


def head_name(layer: int, head: int) -> str:
    return f"L{layer}H{head}"


def head_curves(vertical: np.ndarray, heads: Sequence[Sequence[int]]) -> dict[str, list]:
    """Vertical scores ``[layers, heads, n]`` of the given (layer, head) pairs, by head name."""
    return {
        head_name(layer, head): [rounded_number(value) for value in vertical[layer, head]]
        for layer, head in heads
    }


def _trace_values(table: Any, trace: str, column: str) -> dict[int, Any] | None:
    """``column`` of a trace's rows keyed by their ``sentence`` (None without such rows)."""
    if table is None:
        return None
    rows = table[table["trace"] == trace]
    return dict(zip(rows["sentence"], rows[column], strict=True)) if len(rows) else None


def _labels_by_chunk(chunks: Sequence[Mapping[str, Any]]) -> dict[int, Mapping[str, Any]]:
    return {int(chunk["chunk_idx"]): chunk for chunk in chunks}


def trace_page(
    results: Path,
    model: str,
    rollouts: str,
    record: Mapping[str, Any],
    scores: Any,
    heads: Sequence[Sequence[int]],
    suppression: Any,
    ablation: Any,
    curve_heads: int = CURVE_HEADS,
) -> TracePage:
    """The page of one trace from the run's files (``scores``, ``suppression``: the model's
    receiver-score and suppression-importance tables, or None; ``ablation``: measure key ->
    the receiver-ablation rows of the counterfactual tables, :data:`ABLATION_COLUMNS`)."""
    trace = record["trace"]
    sentences = read_json(results / "sentences" / rollouts / f"{trace}.json")
    chunk_idx = [int(chunk) for chunk in sentences["chunk_idx"]]
    n = len(chunk_idx)
    labels = _labels_by_chunk(read_json(results / "labels" / rollouts / f"{trace}.json")["chunks"])
    tokens = results / "tokens" / model / f"{trace}.json"
    categories, depends_on = [], []
    for chunk in chunk_idx:
        label = labels.get(chunk, {})
        categories.append((list(label.get("function_tags") or []) or ["unknown"])[0])
        depends_on.append([int(dep) for dep in label.get("depends_on") or []])
    dataset = _labels_by_chunk(record.get("labels") or [])
    measures: dict[str, list[float | None]] = {}
    receiver = _trace_values(scores, trace, "receiver_score")
    if receiver is not None:
        measures["receiver_score"] = per_sentence(receiver, n)
    suppressed = _trace_values(suppression, trace, "suppression_importance")
    if suppressed is not None:
        measures["suppression_importance"] = per_sentence(suppressed, n)
    for metric in ("counterfactual_importance_kl", "resampling_importance_accuracy"):
        measures[metric] = by_chunk(
            {chunk: label.get(metric) for chunk, label in dataset.items()}, chunk_idx
        )
    for key, table in ablation.items():
        ablated = _trace_values(table, trace, ABLATION_COLUMNS[key][1])
        if ablated is not None:
            measures[key] = by_chunk(ablated, chunk_idx)
    matrix_file = results / "suppression" / model / f"{trace}.npz"
    matrix = read_npz(matrix_file)[0]["log_kl"] if matrix_file.exists() else None
    attention_file = results / "attention" / model / f"{trace}.npz"
    curves = {}
    if attention_file.exists() and len(heads):
        vertical = read_npz(attention_file)[0]["vertical_scores"]
        curves = head_curves(vertical, list(heads)[:curve_heads])
    return TracePage(
        model=model,
        trace=trace,
        problem=record["problem_text"],
        correct=bool(record["is_correct"]),
        n_tokens=read_json(tokens)["n_tokens"] if tokens.exists() else None,
        sentences=list(sentences["sentences"]),
        chunk_idx=chunk_idx,
        categories=categories,
        depends_on=depends_on,
        measures=measures,
        matrix=matrix_json(matrix) if matrix is not None and len(matrix) == n else None,
        curves=curves,
    )


def _table(path: Path) -> Any:
    return read_tsv(path) if path.exists() else None


def explorer_pages(
    results: str | Path,
    models: Mapping[str, str],
    interventions_model: str | None,
    curve_heads: int = CURVE_HEADS,
) -> tuple[list[TracePage], dict[str, list[dict]], list[tuple[str, str]]]:
    """The pages of every usable trace of every model (``models``: name -> rollouts folder),
    the receiver heads per model and the links to the run's figures and tables (relative to
    ``explorer/``)."""
    results = Path(results)
    records = read_records(str(results / "rollouts" / "records.jsonl"))
    pages, heads, links = [], {}, []
    for model, rollouts in models.items():
        head_table = _table(results / "receivers" / model / "receiver_heads.tsv")
        head_rows = [] if head_table is None else head_table.to_dict(orient="records")
        heads[model] = head_rows
        top = [(int(row["layer"]), int(row["head"])) for row in head_rows]
        scores = _table(results / "receivers" / model / "receiver_scores.tsv")
        suppression = _table(results / "suppression" / model / "importance.tsv")
        ablation = {}
        if model == interventions_model:
            folder = results / "interventions" / model / "counterfactual"
            files = {name for name, _ in ABLATION_COLUMNS.values()}
            tables = {name: _table(folder / name) for name in sorted(files)}  # each read once
            for key, (name, column) in ABLATION_COLUMNS.items():
                table = tables[name]
                if table is not None and column in table:
                    ablation[key] = table[table["kind"] == "receivers"]
        for record in records:
            if record["rollouts"] == rollouts:
                pages.append(
                    trace_page(
                        results,
                        model,
                        rollouts,
                        record,
                        scores,
                        top,
                        suppression,
                        ablation,
                        curve_heads,
                    )  # fmt: skip
                )
        for name in FIGURES:
            if (results / "figures" / model / f"{name}.png").exists():
                links.append((f"{name} ({model})", f"../figures/{model}/{name}.png"))
        blackbox = results / "receivers" / model / "blackbox" / "correlations.md"
        if blackbox.exists():
            links.append(
                (f"white-box vs black-box ({model})", "../" + str(blackbox.relative_to(results)))
            )
    tables = sorted((results / "interventions").glob("*/*/*.md"))
    tables += [
        path
        for name in COUNTERFACTUAL_LINKS
        for path in sorted((results / "interventions").glob(f"*/counterfactual/{name}"))
    ]
    for table in tables:
        links.append((table.stem.replace("_", " "), "../" + str(table.relative_to(results))))
    return pages, heads, links
