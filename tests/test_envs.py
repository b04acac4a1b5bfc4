"""Every pin in envs/*.yaml mirrors pyproject.toml, so the conda path runs the same software."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s;]+)$")


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pyproject_pins() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        requirements += extra
    pins = {}
    for requirement in requirements:
        match = PIN.match(requirement)
        assert match, f"pyproject requirement {requirement!r} is not pinned with =="
        pins[normalise(match.group(1))] = match.group(2)
    return pins


ENV_FILES = sorted((ROOT / "envs").glob("*.yaml"))


def test_there_are_env_files() -> None:
    assert ENV_FILES


@pytest.mark.parametrize("env_file", ENV_FILES, ids=lambda p: p.name)
def test_env_pins_mirror_pyproject(env_file: Path) -> None:
    pins = pyproject_pins()
    environment = yaml.safe_load(env_file.read_text())
    pip_sections = [d["pip"] for d in environment["dependencies"] if isinstance(d, dict)]
    assert pip_sections, f"{env_file.name} has no pip section"
    for requirement in pip_sections[0]:
        if requirement.startswith("-e"):
            continue
        match = PIN.match(requirement)
        assert match, f"{env_file.name}: {requirement!r} is not pinned with =="
        name, version = normalise(match.group(1)), match.group(2)
        assert name in pins, f"{env_file.name}: {name} is not a dependency in pyproject.toml"
        assert pins[name] == version, (
            f"{env_file.name}: {name}=={version} but pyproject pins {pins[name]}"
        )
