"""What the benchmarks share: wall-clock timing that waits for the GPU. (Their randomly
initialised models come from ``anchorflow.models.tiny``, the tests' model fixtures.)"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch


def synchronized_seconds(
    function: Callable[..., Any], *args: Any, **kwargs: Any
) -> tuple[Any, float]:
    """``function(*args, **kwargs)`` and its wall time in seconds, with queued GPU work finished
    before the clock starts and before it stops."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    value = function(*args, **kwargs)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return value, time.perf_counter() - start
