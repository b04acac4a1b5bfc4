"""Out-of-memory retries (anchorflow.memory) and the suppression matrix's use of them; the
streamed attention's are in test_attention.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from accelerate.utils import memory as accelerate_memory
from test_suppression import SPANS, tiny_model, token_ids

from anchorflow.memory import halvings, run_with_fallbacks
from anchorflow.suppression import matrix as suppression_matrix_module
from anchorflow.suppression.divergence import KLSettings
from anchorflow.suppression.matrix import oom_fallbacks, suppression_matrix

OUT_OF_MEMORY = "CUDA out of memory. Tried to allocate 2.00 GiB (injected)"


def test_halvings_and_suppression_fallbacks() -> None:
    assert halvings(8) == [8, 4, 2, 1] and halvings(5) == [5, 2, 1] and halvings(1) == [1]
    assert oom_fallbacks(4, 8) == [(4, 8), (2, 8), (1, 8), (1, 4), (1, 2), (1, 1)]


def test_fallbacks_in_order_and_the_device_cache_cleared_only_after_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clears, tried, heard = [], [], []
    monkeypatch.setattr(
        accelerate_memory, "clear_device_cache", lambda **kwargs: clears.append(kwargs)
    )

    def fits_at_two(size: int) -> str:
        tried.append(size)
        if size > 2:
            raise torch.OutOfMemoryError(OUT_OF_MEMORY)
        return f"ran at {size}"

    assert run_with_fallbacks(fits_at_two, [2, 1]) == ("ran at 2", 0)
    assert clears == []  # a run that fits pays for no cache clearing
    tried.clear()
    assert run_with_fallbacks(fits_at_two, [8, 4, 2, 1], heard.append) == ("ran at 2", 2)
    assert tried == [8, 4, 2] and heard == [4, 2] and clears


def test_other_errors_and_exhausted_fallbacks_raise() -> None:
    def broken(size: int) -> None:
        raise ValueError("not a memory problem")

    with pytest.raises(ValueError, match="not a memory problem"):
        run_with_fallbacks(broken, [4, 2, 1])

    def never_fits(size: int) -> None:
        raise torch.OutOfMemoryError(OUT_OF_MEMORY)

    with pytest.raises(RuntimeError, match="No executable batch size"):
        run_with_fallbacks(never_fits, [4, 2, 1])
    with pytest.raises(RuntimeError, match="No executable batch size"):
        run_with_fallbacks(never_fits, [1])


def test_out_of_memory_halves_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny_model("qwen2")
    settings = KLSettings(mode="full")
    expected = suppression_matrix(model, token_ids(), SPANS, settings, batch_size=1)
    original = suppression_matrix_module._forward_suppressed

    def small_batches_only(*args: object, **kwargs: object) -> torch.Tensor:
        if args[3].shape[0] > 2:
            raise torch.OutOfMemoryError(
                "CUDA out of memory. Tried to allocate 2.00 GiB (injected)"
            )
        return original(*args, **kwargs)

    monkeypatch.setattr(suppression_matrix_module, "_forward_suppressed", small_batches_only)
    result = suppression_matrix(model, token_ids(), SPANS, settings, batch_size=8)
    assert (result.batch_size, result.n_oom_retries) == (2, 2)
    np.testing.assert_allclose(result.log_kl, expected.log_kl, atol=1e-5, rtol=0)

    def small_blocks_only(*args: object, **kwargs: object) -> torch.Tensor:
        if args[3].shape[0] > 1 or args[6] > 4:
            raise torch.OutOfMemoryError(
                "CUDA out of memory. Tried to allocate 2.00 GiB (injected)"
            )
        return original(*args, **kwargs)

    monkeypatch.setattr(suppression_matrix_module, "_forward_suppressed", small_blocks_only)
    result = suppression_matrix(model, token_ids(), SPANS, settings, batch_size=2, query_block=16)
    assert (result.batch_size, result.query_block, result.n_oom_retries) == (1, 4, 3)
    np.testing.assert_allclose(result.log_kl, expected.log_kl, atol=1e-5, rtol=0)

    def always(*args: object, **kwargs: object) -> torch.Tensor:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")

    monkeypatch.setattr(suppression_matrix_module, "_forward_suppressed", always)
    with pytest.raises(RuntimeError, match="No executable batch size"):
        suppression_matrix(model, token_ids(), SPANS, settings, batch_size=4)


def test_out_of_memory_mid_trace_keeps_the_sentences_done(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = tiny_model("qwen2")
    settings = KLSettings(mode="full")
    expected = suppression_matrix(model, token_ids(), SPANS, settings, batch_size=1)
    original = suppression_matrix_module._forward_suppressed
    batch_sizes = []

    def out_of_memory_on_the_third_batch(*args: object, **kwargs: object) -> torch.Tensor:
        batch_sizes.append(args[3].shape[0])
        if len(batch_sizes) == 3:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1 GiB")
        return original(*args, **kwargs)

    monkeypatch.setattr(
        suppression_matrix_module, "_forward_suppressed", out_of_memory_on_the_third_batch
    )
    result = suppression_matrix(model, token_ids(), SPANS, settings, batch_size=2)
    # 7 sentences: two batches of 2 done, the third fails, the last three go one by one
    assert batch_sizes == [2, 2, 2, 1, 1, 1]
    assert (result.batch_size, result.n_oom_retries) == (1, 1)
    np.testing.assert_allclose(result.log_kl, expected.log_kl, atol=1e-5, rtol=0)
