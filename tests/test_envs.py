"""The conda environments (``--sdm conda``): pins mirror pyproject.toml, no entry depends on where
Snakemake copies the env file, every rule's env provides what its script imports, and jobs import
the workflow's own package through the PYTHONPATH the Snakefile sets."""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import shutil
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from conftest import copy_workflow, run_snakemake

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s;]+)$")
CONDA_PIN = re.compile(r"^([A-Za-z0-9_.\-]+)=([^\s=]+)$")
# conda-forge names of PyPI distributions where the two differ.
CONDA_NAMES = {"torch": "pytorch", "matplotlib": "matplotlib-base"}
ENV_FILES = sorted((ROOT / "envs").glob("*.yaml"))


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


def env_requirements(env_file: Path) -> tuple[list[str], list[str]]:
    """The conda dependencies (strings, ``python`` and ``pip`` left out) and the pip entries."""
    dependencies = yaml.safe_load(env_file.read_text())["dependencies"]
    conda = [
        d for d in dependencies if isinstance(d, str) and d.split("=")[0] not in ("python", "pip")
    ]
    pip = [entry for d in dependencies if isinstance(d, dict) for entry in d.get("pip", [])]
    return conda, pip


def env_distributions(env_file: Path) -> dict[str, str]:
    """PyPI distribution name -> pinned version of every package an env file declares."""
    conda, pip = env_requirements(env_file)
    pypi_name = {conda_name: pypi for pypi, conda_name in CONDA_NAMES.items()}
    declared = {}
    for requirement in conda:
        match = CONDA_PIN.match(requirement)
        assert match, f"{env_file.name}: conda dependency {requirement!r} is not pinned with ="
        declared[normalise(pypi_name.get(match.group(1), match.group(1)))] = match.group(2)
    for requirement in pip:
        match = PIN.match(requirement)
        assert match, f"{env_file.name}: pip entry {requirement!r} is not a pinned package"
        declared[normalise(match.group(1))] = match.group(2)
    return declared


def test_there_are_env_files() -> None:
    assert ENV_FILES


@pytest.mark.parametrize("env_file", ENV_FILES, ids=lambda p: p.name)
def test_env_pins_mirror_pyproject(env_file: Path) -> None:
    pins = pyproject_pins()
    for name, version in env_distributions(env_file).items():
        assert name in pins, f"{env_file.name}: {name} is not a dependency in pyproject.toml"
        assert pins[name] == version, f"{env_file.name}: {name}={version}, pyproject {pins[name]}"


@pytest.mark.parametrize("env_file", ENV_FILES, ids=lambda p: p.name)
def test_env_survives_snakemakes_copy(env_file: Path, tmp_path: Path) -> None:
    """Snakemake copies an env file to ``.snakemake/conda/<hash>.yaml`` and conda runs pip from
    that folder: a local path (``-e ../``, ``./pkg``, ``file:``) would then name another folder.
    No entry may be a path."""
    copied = tmp_path / ".snakemake" / "conda" / "0123abcd.yaml"
    copied.parent.mkdir(parents=True)
    shutil.copy(env_file, copied)
    _, pip = env_requirements(copied)
    for entry in pip:
        target = entry.split(None, 1)[-1] if entry.startswith("-e") else entry
        looks_like_path = entry.startswith(("-e", "--editable", ".", "/", "file:")) or "/" in entry
        assert not looks_like_path, (
            f"{env_file.name}: pip entry {entry!r} is a path; from the copy it resolves to "
            f"{(copied.parent / target).resolve()}, not the checkout"
        )


def _module_file(name: str) -> Path | None:
    base = ROOT / "src" / Path(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_names(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def third_party_modules(script: Path) -> set[str]:
    """Top-level third-party modules a script imports, through every anchorflow module it reaches
    (imports inside functions included)."""
    seen: set[Path] = set()
    pending, modules = [script], set()
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imported_names(path):
            top = name.split(".")[0]
            if top == "anchorflow":
                module = _module_file(name)
                if module:
                    pending.append(module)
            elif top not in sys.stdlib_module_names:
                modules.add(top)
    return modules


def rule_environments() -> dict[str, tuple[Path, Path]]:
    """rule name -> (env file, script) for every script rule."""
    rules = {}
    for rule_file in sorted((ROOT / "rules").glob("*.smk")):
        for block in re.split(r"\n(?=(?:rule|checkpoint) )", rule_file.read_text()):
            name = re.match(r"(?:rule|checkpoint) (\w+):", block)
            env = re.search(r'conda:\s*\n\s*"\.\./(envs/\w+\.yaml)"', block)
            script = re.search(r'script:\s*\n\s*"\.\./(scripts/\w+\.py)"', block)
            if name and script:
                assert env, f"rule {name.group(1)} has a script but no conda env"
                rules[name.group(1)] = (ROOT / env.group(1), ROOT / script.group(1))
    return rules


RULES = rule_environments()


def test_every_script_rule_has_an_env() -> None:
    assert len(RULES) > 20


@pytest.mark.parametrize("rule", sorted(RULES))
def test_rule_env_provides_what_its_script_imports(rule: str) -> None:
    env_file, script = RULES[rule]
    declared = set(env_distributions(env_file))
    provided = set(declared)
    for name in declared:  # what the declared packages themselves install
        for requirement in importlib.metadata.requires(name) or []:
            if "extra ==" not in requirement:
                provided.add(normalise(re.split(r"[\s<>=!~;\[(]", requirement, maxsplit=1)[0]))
    distributions = importlib.metadata.packages_distributions()
    for module in sorted(third_party_modules(script)):
        names = {normalise(name) for name in distributions.get(module, [module])}
        assert names & provided, (
            f"rule {rule} ({script.name}) imports {module} ({', '.join(sorted(names))}), "
            f"which {env_file.name} does not provide"
        )


def test_jobs_import_the_workflows_own_package(tmp_path: Path) -> None:
    """A job imports ``anchorflow`` from the workflow's ``src/`` (the Snakefile's PYTHONPATH),
    not from wherever it is installed: in a conda env it is not installed at all. The copy's
    package records each import; the installed (editable) package is the checkout's, which
    does not."""
    workflow = copy_workflow(tmp_path / "workflow")
    probe = tmp_path / "imports.txt"
    package = workflow.root / "src" / "anchorflow" / "__init__.py"
    package.write_text(
        package.read_text()
        + "\nimport os as _os\n\nif _os.environ.get('ANCHORFLOW_IMPORT_PROBE'):\n"
        "    with open(_os.environ['ANCHORFLOW_IMPORT_PROBE'], 'a') as _probe:\n"
        "        _probe.write(f'{_os.getpid()} {__file__}\\n')\n"
    )
    environment = {**os.environ, "ANCHORFLOW_IMPORT_PROBE": str(probe)}
    environment.pop("PYTHONPATH", None)
    run_snakemake(
        workflow,
        "results/demo/report/config.yaml", "--cores", "1", "--configfile", "demo/config.yaml",
        environment=environment,
    )  # fmt: skip
    imports = [line.split(" ", 1) for line in probe.read_text().splitlines()]
    processes = {pid for pid, _ in imports}
    assert len(processes) >= 2, f"only the Snakefile imported the copy's package: {imports}"
    assert {path for _, path in imports} == {str(package)}
