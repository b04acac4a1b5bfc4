"""Locations of the shared real data beside the checkout (``../shared``), and skip markers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ANCHORFLOW_SHARED", REPO_ROOT.parent / "shared"))
SHARED_ROLLOUTS = SHARED / "data" / "math-rollouts"
SHARED_TOKENIZERS = SHARED / "tokenizers"
QWEN14B_ROLLOUTS = "deepseek-r1-distill-qwen-14b"
SAMPLING_FOLDER = "temperature_0.6_top_p_0.95"
PAPER_PROBLEMS = (330, 1591, 2189, 2236, 2238, 3448, 4164, 4682, 6596, 6998)

needs_shared_data = pytest.mark.skipif(
    not SHARED_ROLLOUTS.is_dir(),
    reason=f"the shared real data sample is not at {SHARED_ROLLOUTS} (set ANCHORFLOW_SHARED)",
)
needs_shared_tokenizers = pytest.mark.skipif(
    not SHARED_TOKENIZERS.is_dir(),
    reason=f"the shared tokenizers are not at {SHARED_TOKENIZERS} (set ANCHORFLOW_SHARED)",
)


def shared_trace_folders() -> list[Path]:
    """Every problem folder of the shared sample, sorted."""
    return sorted(SHARED_ROLLOUTS.glob(f"*/{SAMPLING_FOLDER}/*_base_solution/problem_*"))
