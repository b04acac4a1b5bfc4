"""The labelling stage through Snakemake against the fake API: settings that cannot change a
label (retries, waits, deadlines, polling, where the cache lies) rerun nothing and buy nothing;
a setting that can (the model) reruns the label jobs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import yaml
from conftest import DEMO_CONFIG, copy_workflow, run_snakemake
from fake_anthropic import FakeServer
from labels_support import DUMMY_KEY, catalog

from anchorflow.data.demo import DEMO_PROBLEM_NUMBERS, ROLLOUTS
from anchorflow.data.rollouts import acquire, requested_traces


def test_transport_settings_and_a_moved_cache_rerun_and_buy_nothing(tmp_path: Path) -> None:
    workflow = copy_workflow(tmp_path / "workflow")
    config = yaml.safe_load((workflow.root / DEMO_CONFIG).read_text())
    config["labels"] = {
        "source": "anthropic",
        "batch": True,
        "poll_interval_s": 0.01,
        "max_retries": 1,
        "backoff_base_s": 0.001,
        "backoff_max_s": 0.01,
        "cache_dir": str(tmp_path / "cache"),
    }
    config_file = workflow.root / "labels.yaml"
    config_file.write_text(yaml.safe_dump(config))
    requests = requested_traces([ROLLOUTS], DEMO_PROBLEM_NUMBERS, ["correct", "incorrect"])
    records, _ = acquire(str(workflow.root / "demo" / "math-rollouts"), requests)

    with FakeServer(catalog(records)) as fake:
        environment = {
            **os.environ,
            "ANTHROPIC_BASE_URL": fake.base_url,
            "ANTHROPIC_API_KEY": DUMMY_KEY,
        }
        environment.pop("SNAKEMAKE_PROFILE", None)

        def snakemake(*args: str) -> str:
            completed = run_snakemake(
                workflow,
                "labels_all", *args, "--cores", "2", "--configfile", str(config_file),
                environment=environment,
            )  # fmt: skip
            return completed.stdout + completed.stderr

        snakemake()
        labels = sorted((workflow.results / "labels" / ROLLOUTS).glob("*_*.json"))
        assert len(labels) == len(records)
        assert fake.counts["batches.create"] == 1 and fake.counts["messages"] == 0
        bought = fake.total()

        shutil.move(tmp_path / "cache", tmp_path / "moved-cache")
        config["labels"] |= {
            "cache_dir": str(tmp_path / "moved-cache"),
            "timeout_s": 30,
            "job_timeout_s": 60,
            "max_retries": 3,
            "backoff_max_s": 0.02,
            "poll_interval_s": 0.02,
            "poll_timeout_s": 600,
        }
        config_file.write_text(yaml.safe_dump(config))
        assert "Nothing to be done" in snakemake("--dry-run")
        snakemake()
        assert fake.total() == bought

        config["labels"]["model"] = "claude-haiku-4-5"
        config_file.write_text(yaml.safe_dump(config))
        planned = snakemake("--dry-run")
        assert "label_trace" in planned and "label_batch" in planned
