"""Retrying a model computation with smaller blocks after an out-of-memory error.

The retries are ``accelerate.utils.find_executable_batch_size``, which recognises the error
(CUDA, MPS, XPU or CPU allocator) and clears the device cache before each try. It also clears
the cache and collects garbage on every call, about 0.2 s in a process holding a model, so the
first try runs outside it and the library takes over only after an out-of-memory error.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from accelerate.utils import find_executable_batch_size
from accelerate.utils.memory import should_reduce_batch_size

Setting = TypeVar("Setting")
Result = TypeVar("Result")


def halvings(size: int) -> list[int]:
    """``size`` halved down to 1: ``[8, 4, 2, 1]``."""
    sizes = [size]
    while sizes[-1] > 1:
        sizes.append(sizes[-1] // 2)
    return sizes


def run_with_fallbacks(
    run: Callable[[Setting], Result],
    fallbacks: Sequence[Setting],
    on_fallback: Callable[[Setting], None] = lambda setting: None,
) -> tuple[Result, int]:
    """``run(fallbacks[0])``; after an out-of-memory error the next fallback, and so on; past
    the last a ``RuntimeError`` (accelerate's "No executable batch size found"). Returns the
    result and the index of the fallback that gave it; ``on_fallback`` hears each retry's
    setting."""
    try:
        return run(fallbacks[0]), 0
    except Exception as error:
        if not should_reduce_batch_size(error):
            raise
    used = 1

    def next_fallback() -> int:
        nonlocal used
        used += 1
        if used < len(fallbacks):
            on_fallback(fallbacks[used])
        return len(fallbacks) - used

    @find_executable_batch_size(
        starting_batch_size=len(fallbacks) - used, reduce_batch_size_fn=next_fallback
    )
    def retry(fallbacks_left: int) -> Result:
        return run(fallbacks[len(fallbacks) - fallbacks_left])

    if used < len(fallbacks):
        on_fallback(fallbacks[used])
    return retry(), used
