"""Loading the models and tokenizers named in ``config["models"]``.

A model spec is one entry of ``config["models"]`` (``schemas/config.schema.yaml``):

- ``source: hub``: ``hf_id`` plus ``revision`` from the Hugging Face hub (or its local cache);
- ``source: folder``: ``path`` to a ``save_pretrained`` folder;
- ``source: gguf``: ``path`` to a ``.gguf`` file (dequantised to ``dtype`` on load);
- ``source: demo``: ``path`` to the folder built by the ``build_demo_model`` rule.

An optional ``tokenizer`` (hub id or folder) overrides the model's own tokenizer; ``dtype``
(float16, bfloat16, float32) sets the weights' precision. The model reads the text with the
tokenizer's default special tokens, so BOS is prepended as in the reference (§1, §8).
A leading ``~`` in ``path`` and ``tokenizer`` is the user's home folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
SOURCES = ("hub", "folder", "gguf", "demo")


def pick_device() -> torch.device:
    """CUDA when a GPU is visible, CPU otherwise."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def model_location(spec: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The ``from_pretrained`` location and keyword arguments of a model spec."""
    source = spec.get("source")
    if source not in SOURCES:
        raise ValueError(
            f"model {spec.get('name')!r}: source must be one of {SOURCES}, got {source!r}"
        )
    if source == "hub":
        if not spec.get("hf_id"):
            raise ValueError(f"model {spec.get('name')!r}: source hub needs 'hf_id'")
        return spec["hf_id"], {"revision": spec.get("revision", "main")}
    if not spec.get("path"):
        raise ValueError(f"model {spec.get('name')!r}: source {source} needs 'path'")
    path = Path(spec["path"]).expanduser()
    if source == "gguf":
        if not path.is_file():
            raise FileNotFoundError(f"model {spec.get('name')!r}: GGUF file {path} does not exist")
        return str(path.parent), {"gguf_file": path.name}
    if not path.is_dir():
        raise FileNotFoundError(f"model {spec.get('name')!r}: model folder {path} does not exist")
    return str(path), {}


def load_config(spec: dict[str, Any]) -> Any:
    """The transformers config of a model spec (layers, heads, ...), without its weights."""
    location, kwargs = model_location(spec)
    return AutoConfig.from_pretrained(location, **kwargs)


def load_tokenizer(spec: dict[str, Any]) -> Any:
    """The tokenizer of a model spec (or its ``tokenizer`` override); pad = eos when missing."""
    if spec.get("tokenizer"):
        tokenizer = AutoTokenizer.from_pretrained(os.path.expanduser(spec["tokenizer"]))
    else:
        location, kwargs = model_location(spec)
        tokenizer = AutoTokenizer.from_pretrained(location, **kwargs)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(
    spec: dict[str, Any],
    device: torch.device | str | None = None,
    attn_implementation: str = "eager",
) -> tuple[PreTrainedModel, Any]:
    """Load ``(model, tokenizer)`` of a model spec in eval mode on ``device`` (default: auto).

    ``attn_implementation`` is any name known to transformers' ``AttentionInterface``
    (eager, as the reference, by default).
    """
    dtype_name = spec.get("dtype", "float16")
    if dtype_name not in DTYPES:
        raise ValueError(f"model {spec.get('name')!r}: dtype must be one of {sorted(DTYPES)}")
    device = torch.device(device) if device is not None else pick_device()
    location, kwargs = model_location(spec)
    model = AutoModelForCausalLM.from_pretrained(
        location,
        dtype=DTYPES[dtype_name],
        attn_implementation=attn_implementation,
        device_map={"": device},
        **kwargs,
    )
    model.eval()
    tokenizer = load_tokenizer(spec)
    if model.generation_config is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def encode_text(tokenizer: Any, text: str) -> torch.Tensor:
    """Token ids ``[1, T]`` of ``text`` with the tokenizer's default special tokens (BOS first)."""
    return tokenizer(text, return_tensors="pt", add_special_tokens=True)["input_ids"]


def model_metadata(spec: dict[str, Any]) -> dict[str, Any]:
    """What identifies a loaded model in output metadata (no absolute paths)."""
    return {
        "name": spec.get("name"),
        "source": spec.get("source"),
        "model_id": spec.get("hf_id") or Path(spec.get("path", "")).name,
        "revision": spec.get("revision") if spec.get("source") == "hub" else None,
        "tokenizer": spec.get("tokenizer"),
        "dtype": spec.get("dtype", "float16"),
    }
