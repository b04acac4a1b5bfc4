"""Figure helpers shared by every plotting module: headless backend, fixed style, byte-stable files.

Figures are drawn with the Agg backend and saved through :func:`save_figure`, which renders
PNG and PDF into memory with fixed dpi and no creation date and writes them atomically, so two
runs with the same data give identical files.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from anchorflow.io import PathLike, write_bytes  # noqa: E402

DPI = 300
STYLE = {
    "font.size": 11,
    "svg.hashsalt": "anchorflow",
    "pdf.fonttype": 42,
    "savefig.dpi": DPI,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


@contextmanager
def figure_style() -> Iterator[None]:
    """The fixed rcParams every anchorflow figure is drawn with."""
    with plt.rc_context(STYLE):
        yield


def figure_bytes(figure: Figure, fmt: str, dpi: int = DPI) -> bytes:
    """Render ``figure`` to ``png`` or ``pdf`` bytes with no timestamps."""
    metadata = {"CreationDate": None} if fmt == "pdf" else {"Software": None}
    buffer = io.BytesIO()
    figure.savefig(buffer, format=fmt, dpi=dpi, metadata=metadata)
    return buffer.getvalue()


def save_figure(figure: Figure, png: PathLike, pdf: PathLike, dpi: int = DPI) -> None:
    """Write ``figure`` as PNG and PDF (atomically, deterministically) and close it."""
    try:
        write_bytes(png, figure_bytes(figure, "png", dpi))
        write_bytes(pdf, figure_bytes(figure, "pdf", dpi))
    finally:
        plt.close(figure)
