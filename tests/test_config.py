"""Config validation: defaults are filled in; unknown keys and bad values are named."""

from __future__ import annotations

import copy
import os
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


@pytest.mark.parametrize(
    "overlays",
    [
        ["config.yaml", "config/slurm-shards.yaml"],
        ["config.yaml", "config/paper-parity.yaml"],
        ["config.yaml", "config/gsm8k.yaml"],
        ["demo/real-sample.yaml", "demo/real-interventions.yaml"],
        [
            "demo/real-sample.yaml",
            "demo/real-interventions.yaml",
            "demo/real-interventions-ci.yaml",
        ],
    ],
)
def test_shipped_overlays_merge_into_a_valid_config(overlays: list[str]) -> None:
    from snakemake.utils import update_config

    config = load(overlays[0])
    for overlay in overlays[1:]:
        update_config(config, load(overlay))
    validate_config(config, SCHEMA)


def test_problem_source_hub_needs_its_columns() -> None:
    config = load("config.yaml")
    config["interventions"]["problems"] |= {"source": "hub", "hub": {"path": "openai/gsm8k"}}
    with pytest.raises(ConfigError, match=r"interventions\.problems\.hub.*'split' is a required"):
        validate_config(config, SCHEMA)


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


def test_stage_defaults_are_filled_through_defs_refs(tmp_path: Path) -> None:
    (tmp_path / "config.schema.yaml").write_text(
        "$schema: 'https://json-schema.org/draft/2020-12/schema'\ntype: object\nproperties:\n"
        "  stage: {$ref: '#/$defs/stage', default: {}}\n"
        "$defs:\n"
        "  stage:\n    type: object\n    additionalProperties: false\n"
        "    properties:\n      top_k: {type: integer, default: 20}\n"
    )
    config: dict = {}
    validate_config(config, tmp_path / "config.schema.yaml")
    assert config == {"stage": {"top_k": 20}}
    with pytest.raises(ConfigError, match=r"config key 'stage\.top_k'"):
        validate_config({"stage": {"top_k": "x"}}, tmp_path / "config.schema.yaml")


def test_one_schema_file_with_a_definition_per_stage() -> None:
    schema = yaml.safe_load(SCHEMA.read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert sorted(schema["$defs"]) == sorted(
        ["demo_model", "labels", "receivers", "attention", "interventions", "suppression"]
    )
    assert sorted(path.name for path in SCHEMA.parent.iterdir()) == ["config.schema.yaml"]


def test_validate_config_command_prints_the_filled_config(tmp_path: Path) -> None:
    config = load("demo/config.yaml")
    del config["sentences"]
    written = tmp_path / "config.yaml"
    written.write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "anchorflow.config", str(written)]
    filled = yaml.safe_load(
        subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    )
    assert filled["sentences"] == {"whitebox_variant": "head", "token_rule": "offsets"}
    config["receivers"]["top_k"] = 0
    written.write_text(yaml.safe_dump(config))
    failed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert failed.returncode != 0
    assert "receivers.top_k" in failed.stderr


@pytest.mark.parametrize(
    ("key_path", "value"),
    [
        (("labels", "window_chunks"), 60.0),
        (("labels", "max_tokens"), 4096.0),
        (("problems",), [101.0]),
        (("receivers", "top_k"), 20.0),
    ],
)
def test_integers_written_as_floats_are_rejected(key_path, value) -> None:
    config = load("demo/config.yaml")
    section = config
    for key in key_path[:-1]:
        section = section.setdefault(key, {})
    section[key_path[-1]] = value
    dotted = ".".join(key_path)
    with pytest.raises(ConfigError, match=rf"'{dotted}(\.0)?'.*is not of type 'integer'"):
        validate_config(config, SCHEMA)


@pytest.mark.parametrize(
    ("source", "missing"),
    [("hub", "hf_id"), ("folder", "path"), ("gguf", "path"), ("demo", "demo")],
)
def test_a_model_without_its_location_stops_at_start_up(source, missing) -> None:
    config = load("demo/config.yaml")
    config["models"].append({"name": "extra", "source": source, "rollouts": "demo-r1-distill"})
    with pytest.raises(ConfigError, match=rf"'models\.1': '{missing}' is a required property"):
        validate_config(config, SCHEMA)


@pytest.mark.parametrize("key", ["", "   "])
def test_an_empty_api_key_stops_the_run_at_start_up(tmp_path: Path, key: str) -> None:
    config = load("demo/config.yaml")
    config["labels"] = {"source": "anthropic"}
    written = tmp_path / "api.yaml"
    written.write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--configfile", str(written)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "ANTHROPIC_API_KEY": key},
    )
    assert result.returncode != 0
    assert "ANTHROPIC_API_KEY is empty" in result.stdout + result.stderr
