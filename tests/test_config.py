"""Config validation: defaults are filled in; unknown keys and bad values are named."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from anchorflow.config import ConfigError, validate_config

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "schemas" / "config.schema.yaml"


def load(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


@pytest.mark.parametrize("name", ["config.yaml", "demo/config.yaml"])
def test_shipped_configs_are_valid(name: str) -> None:
    config = load(name)
    validate_config(config, SCHEMA)
    assert config["sentences"]["whitebox_variant"] == "head"


def test_defaults_are_filled_in() -> None:
    config = load("demo/config.yaml")
    del config["sentences"]
    validate_config(config, SCHEMA)
    assert config["sentences"] == {"whitebox_variant": "head", "token_rule": "offsets"}
    assert config["dataset"]["format"] == "tree"


def test_unknown_key_is_named() -> None:
    config = load("config.yaml")
    config["dataset"]["sorce"] = "x"
    with pytest.raises(ConfigError, match=r"under 'dataset'.*'sorce' was unexpected"):
        validate_config(config, SCHEMA)


def test_bad_value_is_named() -> None:
    config = load("config.yaml")
    broken = copy.deepcopy(config)
    broken["models"][0]["dtype"] = "float8"
    with pytest.raises(ConfigError, match=r"'models\.0\.dtype': 'float8' is not one of"):
        validate_config(broken, SCHEMA)


def test_cli_stops_with_the_key_named(tmp_path: Path) -> None:
    config = load("demo/config.yaml")
    config["sentences"]["token_rule"] = "characters"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--configfile", str(bad)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "sentences.token_rule" in result.stdout + result.stderr
