"""Model and tokenizer loading from every source kind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from anchorflow.models import loading as models
from anchorflow.models.demo import build_demo_model
from anchorflow.models.loading import (
    encode_text,
    load_model,
    load_tokenizer,
    model_metadata,
    pick_device,
)

TEXT = "Let me think. Wait, that is wrong.\n\nAlternatively, count again. Wait, yes. " * 6


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("model")
    build_demo_model(
        out,
        [TEXT],
        seed=3,
        layers=2,
        heads=2,
        kv_heads=1,
        hidden=64,
        intermediate=32,
        vocab_size=400,
        planted_layer=1,
        planted_head=0,
    )
    return out


def test_pick_device() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert pick_device().type == expected


@pytest.mark.parametrize("source", ["folder", "demo"])
def test_load_local_model(folder: Path, source: str) -> None:
    spec = {"name": "tiny", "source": source, "path": str(folder), "dtype": "float32"}
    model, tokenizer = load_model(spec, device="cpu")
    assert not model.training
    assert model.dtype == torch.float32
    assert model.config._attn_implementation == "eager"
    assert tokenizer.pad_token is not None
    ids = encode_text(tokenizer, TEXT)
    assert ids.shape[0] == 1
    assert ids[0, 0].item() == tokenizer.bos_token_id


def test_dtype_from_spec(folder: Path) -> None:
    spec = {"name": "tiny", "source": "folder", "path": str(folder), "dtype": "bfloat16"}
    model, _ = load_model(spec, device="cpu")
    assert model.dtype == torch.bfloat16


def test_pad_token_defaults_to_eos(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = models.AutoTokenizer.from_pretrained

    def without_pad(*args: Any, **kwargs: Any) -> Any:
        tokenizer = real(*args, **kwargs)
        tokenizer.pad_token = None
        return tokenizer

    monkeypatch.setattr(models.AutoTokenizer, "from_pretrained", without_pad)
    tokenizer = load_tokenizer({"name": "tiny", "source": "folder", "path": str(folder)})
    assert tokenizer.pad_token == tokenizer.eos_token


def _record_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple, dict]]:
    calls: list[tuple[str, tuple, dict]] = []

    class Loaded:
        def __init__(self, kind: str) -> None:
            self.kind = kind
            self.generation_config = None
            self.pad_token = "x"
            self.pad_token_id = 0

        def eval(self) -> Loaded:
            return self

    def recorder(kind: str) -> Any:
        def from_pretrained(*args: Any, **kwargs: Any) -> Loaded:
            calls.append((kind, args, kwargs))
            return Loaded(kind)

        return from_pretrained

    monkeypatch.setattr(models.AutoModelForCausalLM, "from_pretrained", recorder("model"))
    monkeypatch.setattr(models.AutoTokenizer, "from_pretrained", recorder("tokenizer"))
    return calls


def test_hub_source_passes_id_and_revision(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _record_calls(monkeypatch)
    spec = {
        "name": "q",
        "source": "hub",
        "hf_id": "org/model",
        "revision": "abc123",
        "dtype": "float16",
    }
    load_model(spec, device="cpu", attn_implementation="sdpa")
    (_, model_args, model_kwargs), (_, tok_args, tok_kwargs) = calls
    assert model_args == ("org/model",)
    assert model_kwargs["revision"] == "abc123"
    assert model_kwargs["dtype"] == torch.float16
    assert model_kwargs["attn_implementation"] == "sdpa"
    assert tok_args == ("org/model",) and tok_kwargs == {"revision": "abc123"}


def test_gguf_source_and_tokenizer_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gguf = tmp_path / "model-Q8_0.gguf"
    gguf.write_bytes(b"GGUF")
    calls = _record_calls(monkeypatch)
    spec = {
        "name": "g",
        "source": "gguf",
        "path": str(gguf),
        "tokenizer": "org/tok",
        "dtype": "float32",
    }
    load_model(spec, device="cpu")
    (_, model_args, model_kwargs), (_, tok_args, tok_kwargs) = calls
    assert model_args == (str(tmp_path),)
    assert model_kwargs["gguf_file"] == "model-Q8_0.gguf"
    assert tok_args == ("org/tok",) and tok_kwargs == {}


@pytest.mark.parametrize(
    ("spec", "error", "message"),
    [
        ({"name": "a", "source": "hub"}, ValueError, "hf_id"),
        ({"name": "a", "source": "web", "path": "x"}, ValueError, "source must be"),
        ({"name": "a", "source": "folder", "path": "/nonexistent/m"}, FileNotFoundError, "folder"),
        ({"name": "a", "source": "gguf", "path": "/nonexistent/m.gguf"}, FileNotFoundError, "GGUF"),
        ({"name": "a", "source": "demo"}, ValueError, "path"),
    ],
)
def test_bad_specs(spec: dict, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        load_tokenizer(spec)


def test_bad_dtype(folder: Path) -> None:
    with pytest.raises(ValueError, match="dtype"):
        load_model({"name": "a", "source": "folder", "path": str(folder), "dtype": "int8"})


def test_metadata_has_no_absolute_paths(folder: Path) -> None:
    meta = model_metadata({"name": "d", "source": "demo", "path": str(folder), "dtype": "float32"})
    assert meta["model_id"] == folder.name
    assert meta["revision"] is None
    hub = model_metadata({"name": "q", "source": "hub", "hf_id": "org/m", "revision": "r1"})
    assert hub["model_id"] == "org/m" and hub["revision"] == "r1" and hub["dtype"] == "float16"
