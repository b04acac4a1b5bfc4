"""What the benchmarks share: randomly initialised Qwen2 models, built directly on their device,
and wall-clock timing that waits for the GPU."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

# deepseek-ai/DeepSeek-R1-Distill-Qwen-14B config.json
QWEN14B_SHAPE = dict(
    vocab_size=152064,
    hidden_size=5120,
    intermediate_size=13824,
    num_hidden_layers=48,
    num_attention_heads=40,
    num_key_value_heads=8,
    max_position_embeddings=131072,
    rms_norm_eps=1e-5,
    rope_parameters={"rope_type": "default", "rope_theta": 1.0e6},
)


def random_qwen2(
    shape: dict[str, Any], device: str, dtype: torch.dtype, seed: int = 0, **config: Any
) -> Qwen2ForCausalLM:
    """A Qwen2 model of ``shape`` (config keyword arguments, ``config`` overriding them) with
    seeded random weights, in ``dtype`` on ``device``, in eval mode."""
    torch.manual_seed(seed)
    model_config = Qwen2Config(**{**shape, **config})
    with torch.device(device):
        model = Qwen2ForCausalLM._from_config(model_config, dtype=dtype)
    return model.eval()


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
