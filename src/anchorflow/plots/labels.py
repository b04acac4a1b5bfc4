"""Confusion-matrix figure of dataset vs Claude first tags."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from anchorflow.io import atomic_path, write_csv  # noqa: E402
from anchorflow.taxonomy import TAGS


def plot_confusion(
    frame: pd.DataFrame,
    kappa: float,
    title: str,
    png: str | Path,
    pdf: str | Path,
    data: str | Path,
) -> None:
    """Heat map of row fractions annotated with counts; writes PNG, PDF and the tidy CSV.

    ``frame`` comes from :func:`anchorflow.labels.agreement.confusion_frame`.
    """
    counts = frame.pivot(index="reference", columns="other", values="count").loc[TAGS, TAGS]
    fractions = frame.pivot(index="reference", columns="other", values="row_fraction")
    fractions = fractions.loc[TAGS, TAGS].to_numpy()
    figure, axes = plt.subplots(figsize=(7.5, 6.5))
    image = axes.imshow(fractions, cmap="Blues", vmin=0, vmax=1)
    for i, j in np.ndindex(fractions.shape):
        count = int(counts.iat[i, j])
        if count:
            colour = "white" if fractions[i, j] > 0.6 else "black"
            axes.text(
                j,
                i,
                f"{count}\n({fractions[i, j]:.0%})",
                ha="center",
                va="center",
                fontsize=6.5,
                color=colour,
            )
    names = [tag.replace("_", " ") for tag in TAGS]
    axes.set_xticks(range(len(TAGS)), names, rotation=45, ha="right", fontsize=8)
    axes.set_yticks(range(len(TAGS)), names, fontsize=8)
    axes.set_xlabel("Claude (first tag)")
    axes.set_ylabel("dataset (first tag)")
    axes.set_title(f"{title}\nCohen's κ = {kappa:.3f}, n = {int(counts.to_numpy().sum())}")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="share of row")
    figure.tight_layout()
    for path, kind in ((png, "png"), (pdf, "pdf")):
        with atomic_path(path) as tmp:
            figure.savefig(tmp, format=kind, dpi=200, metadata=_metadata(kind))
    plt.close(figure)
    write_csv(data, frame)


def _metadata(kind: str) -> dict[str, None]:
    """No creation dates or software versions in the files (deterministic output)."""
    if kind == "pdf":
        return {"CreationDate": None, "ModDate": None, "Producer": None, "Creator": None}
    return {"Software": None}
