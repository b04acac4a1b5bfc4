"""The workflow against the local hub imitation, as a new user and a cluster run it: the login
node's ``snakemake prefetch`` (dataset files and a hub model) with HF_ENDPOINT set, a rerun with
HF_HUB_OFFLINE=1 and no request, a dry run with no request, and failures that are not retried
(a strict run with a missing trace, a revision that does not exist) and leave their reasons."""

from __future__ import annotations

import subprocess

import pytest
import yaml
from conftest import REPO_ROOT, clean_environment, copy_workflow, run_snakemake, snakemake_command
from hub_imitation import HubImitation, add_math_rollouts
from real_data import QWEN14B_ROLLOUTS, REAL_ROLLOUTS
from test_hub import tiny_model_export

pytestmark = pytest.mark.slow

PROBLEMS = [330, 1591]

CONFIG = "hub.yaml"

SOURCE = "hf://datasets/uzaymacar/math-rollouts"

VARIANTS = {
    "strict-v1.yaml": {"source": f"{SOURCE}@v1.0", "strict": True},
    "no-such-revision.yaml": {"source": f"{SOURCE}@nope"},
}


@pytest.fixture
def setting(tmp_path):
    """A workflow copy whose config reads the dataset and a model from the imitation."""
    workflow = copy_workflow(tmp_path / "workflow")
    config = yaml.safe_load((REPO_ROOT / "demo" / "real-sample.yaml").read_text())
    config["run"] = "hub"
    config["problems"] = PROBLEMS
    config["dataset"] |= {"source": SOURCE, "strict": False}
    model = {"name": "tiny", "source": "hub", "hf_id": "anchorflow-tests/tiny-llama"}
    config["models"] = [model | {"dtype": "float32", "rollouts": QWEN14B_ROLLOUTS}]
    config["interventions"]["model"] = "tiny"
    (workflow.root / CONFIG).write_text(yaml.safe_dump(config))
    for name, dataset in VARIANTS.items():
        variant = config | {"dataset": config["dataset"] | dataset}
        (workflow.root / name).write_text(yaml.safe_dump(variant))
    with HubImitation() as hub:
        add_math_rollouts(hub, REAL_ROLLOUTS, f"problem_{PROBLEMS[0]}/")
        _, files = tiny_model_export(tmp_path / "model", "40KB")
        hub.add_repo("model", "anchorflow-tests/tiny-llama").commit(files)
        environment = clean_environment()
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "HF_HUB_CACHE"):
            environment.pop(name, None)
        environment |= {"HF_ENDPOINT": hub.endpoint, "HF_HOME": str(tmp_path / "hf-home")}
        yield workflow, hub, environment


def snakemake(workflow, environment, *args):
    arguments = (*args, "--cores", "1", "--configfile", CONFIG)
    return run_snakemake(workflow, *arguments, environment=environment)


def failing(workflow, environment, config, *args) -> str:
    completed = subprocess.run(
        snakemake_command(*args, "--cores", "1", "--configfile", config),
        cwd=workflow.root,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert completed.returncode != 0, completed.stdout[-3000:]
    return completed.stdout + completed.stderr


def test_prefetch_online_then_everything_offline_with_no_request(setting):
    workflow, hub, environment = setting
    snakemake(workflow, environment, "--dry-run", "prefetch")
    assert hub.requests == []  # parsing and planning contact nothing
    snakemake(workflow, environment, "prefetch")
    results = workflow.root / "results" / "hub"
    records = (results / "rollouts" / "records.jsonl").read_text()
    assert records.count('"trace"') == 2 * len(PROBLEMS)
    assert hub.count(pattern="^/api/datasets/") == 0 and hub.count(pattern="chunk_") == 0
    assert hub.count("HEAD", "^/datasets/.*/resolve/") == 2 * len(PROBLEMS) * 4
    prefetched = (results / "prefetch" / "tiny.json").read_text()
    assert hub.repos[("model", "anchorflow-tests/tiny-llama")].refs["main"] in prefetched

    # A compute node: no network, the same HF_HOME. The outputs are made anew from the cache.
    hub.reset()
    (workflow.root / "results").rename(workflow.root / "results-online")
    offline = environment | {"HF_HUB_OFFLINE": "1"}
    snakemake(workflow, offline, "prefetch", "--forceall")
    assert (results / "rollouts" / "records.jsonl").read_text() == records
    assert (results / "prefetch" / "tiny.json").read_text() == prefetched
    token_file = f"results/hub/tokens/tiny/{PROBLEMS[1]}_correct.json"
    snakemake(workflow, offline, token_file)  # a model rule loads the tokenizer from the cache
    assert hub.requests == []


def test_strict_failure_is_not_retried_and_lists_its_reasons(setting):
    workflow, hub, environment = setting
    output = failing(workflow, environment, "strict-v1.yaml", "acquire_rollouts", "--retries", "3")
    assert "dataset.strict is set and 2 requested trace(s) are unusable" in output
    assert hub.count("HEAD") == 2 * len(PROBLEMS) * 4  # one pass, although --retries 3
    listing = workflow.root / "results" / "hub" / "logs" / "acquire_rollouts.excluded.tsv"
    rows = listing.read_text().splitlines()
    assert len(rows) == 3 and all("missing_file" in row for row in rows[1:])


def test_a_wrong_revision_stops_at_once_with_its_cause(setting):
    workflow, hub, environment = setting
    output = failing(workflow, environment, "no-such-revision.yaml", "acquire_rollouts")
    log = (workflow.root / "results" / "hub" / "logs" / "acquire_rollouts.log").read_text()
    assert "the revision 'nope' does not exist" in log and "dataset.source" in log
    assert "missing_file" not in log + output
    assert hub.count("HEAD") == 1
