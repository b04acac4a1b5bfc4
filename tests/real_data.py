"""Locations of the real data sample the tests read (shipped in ``tests/data/``).

``ANCHORFLOW_REAL_DATA`` points the tests at another folder of the same layout (for example the
``shared/`` folder a development checkout has beside it): ``math-rollouts/`` and
``tokenizers/deepseek-r1-distill-qwen/`` are read from there instead.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = Path(os.environ.get("ANCHORFLOW_REAL_DATA", REPO_ROOT / "tests" / "data"))
REAL_ROLLOUTS = REAL_DATA / "math-rollouts"
REAL_TOKENIZERS = REAL_DATA / "tokenizers"
QWEN14B_ROLLOUTS = "deepseek-r1-distill-qwen-14b"
SAMPLING_FOLDER = "temperature_0.6_top_p_0.95"
PAPER_PROBLEMS = (330, 1591, 2189, 2236, 2238, 3448, 4164, 4682, 6596, 6998)


def real_trace_folders() -> list[Path]:
    """Every problem folder of the real sample, sorted."""
    folders = sorted(REAL_ROLLOUTS.glob(f"*/{SAMPLING_FOLDER}/*_base_solution/problem_*"))
    if not folders:
        raise FileNotFoundError(f"no real traces under {REAL_ROLLOUTS} (ANCHORFLOW_REAL_DATA)")
    return folders
