"""Shards of model jobs and GPU slots: stable membership, resumable shards, one device per job."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from anchorflow.attention import with_oom_retry
from anchorflow.gpu_slots import assign_gpus, claim_slots, device_count
from anchorflow.io import write_jsonl
from anchorflow.shards import (
    result_key,
    run_shard,
    shard_members,
    shard_of,
    shard_traces,
    used_shards,
)

TRACES = [f"{problem}_{kind}" for problem in range(100, 140) for kind in ("correct", "incorrect")]


def test_membership_is_stable_when_traces_are_added():
    before = {trace: shard_of(trace, 4) for trace in TRACES[:30]}
    after = {trace: shard_of(trace, 4) for trace in TRACES}
    assert all(after[trace] == shard for trace, shard in before.items())
    assert sorted(sum((shard_members(TRACES, s, 4) for s in range(4)), [])) == sorted(TRACES)
    assert used_shards(TRACES, 4) == [0, 1, 2, 3]
    assert {shard_of(trace, 1) for trace in TRACES} == {0}
    with pytest.raises(ValueError):
        shard_of("1_correct", 0)


def test_result_key_depends_on_every_field():
    base = {"trace": "1_correct", "params": {"a": 1}, "model": {"name": "m"}}
    assert result_key(base) == result_key(dict(reversed(list(base.items()))))
    assert result_key(base) != result_key({**base, "params": {"a": 2}})


def _writer(calls: list[str], fail_on: str | None = None):
    def compute(item: str, path: Path) -> None:
        calls.append(item)
        if item == fail_on:
            raise RuntimeError("boom")
        path.write_text(f"result of {item}")

    return compute


def test_shard_traces_keys_follow_every_input(tmp_path):
    """A trace's store key changes with the stage, parameters, extra inputs (the suppression
    stage's receiver heads), its tokens file and its text; the other traces' keys do not."""
    records = tmp_path / "records.jsonl"
    rows = [
        {"rollouts": "r", "trace": t, "full_cot": f"text {t}"} for t in ("1_correct", "2_correct")
    ]
    write_jsonl(records, rows)
    tokens = []
    for trace in ("1_correct", "2_correct"):
        tokens.append(str(tmp_path / f"{trace}.json"))
        Path(tokens[-1]).write_text(f'{{"trace": "{trace}"}}')
    spec = {"name": "m", "source": "hub", "hf_id": "x", "rollouts": "r"}
    traces = ["1_correct", "2_correct"]

    def keys(stage="attention", params=None, **extra):
        return shard_traces(stage, params or {"a": 1}, spec, traces, tokens, str(records), **extra)[
            2
        ]

    base = keys()
    assert len(set(base.values())) == 2
    for changed in (keys("suppression"), keys(params={"a": 2}), keys(heads="digest")):
        assert all(changed[t] != base[t] for t in traces)
    Path(tokens[0]).write_text('{"trace": "1_correct", "n": 1}')
    after = keys()
    assert after["1_correct"] != base["1_correct"] and after["2_correct"] == base["2_correct"]
    write_jsonl(records, [{**rows[0], "full_cot": "other"}, rows[1]])
    assert keys()["1_correct"] != after["1_correct"]
    tokens_files, found, _ = shard_traces("attention", {}, spec, traces, tokens, str(records))
    assert list(tokens_files) == traces and found["2_correct"]["full_cot"] == "text 2_correct"


def test_a_killed_shard_keeps_its_finished_traces(tmp_path):
    items = ["a", "b", "c", "d"]
    keys = {item: result_key({"item": item}) for item in items}
    calls: list[str] = []
    with pytest.raises(RuntimeError, match="shard failed on c: boom"):
        run_shard(items, keys, tmp_path / "out", tmp_path / "store", _writer(calls, "c"), bool)
    assert calls == ["a", "b", "c"]
    assert not list((tmp_path / "store").glob("*.part"))  # the failed write left nothing
    calls.clear()
    origin = run_shard(items, keys, tmp_path / "out2", tmp_path / "store", _writer(calls), bool)
    assert calls == ["c", "d"]
    assert origin == {"a": "stored", "b": "stored", "c": "computed", "d": "computed"}
    assert (tmp_path / "out2" / "a.npz").read_text() == "result of a"


def test_an_invalid_stored_result_is_recomputed(tmp_path):
    keys = {"a": result_key({"item": "a"})}
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / f"{keys['a']}.npz").write_text("trunc")
    calls: list[str] = []

    def valid(path: Path) -> bool:
        return path.read_text().startswith("result")

    run_shard(["a"], keys, tmp_path / "out", tmp_path / "store", _writer(calls), valid)
    assert calls == ["a"] and (tmp_path / "out" / "a.npz").read_text() == "result of a"


def test_out_of_memory_on_one_trace_shrinks_only_its_blocks(tmp_path):
    used: dict[str, list[int]] = {}

    def compute(item: str, path: Path) -> None:
        def run(block: int) -> int:
            used.setdefault(item, []).append(block)
            if item == "b" and block > 2:
                raise torch.OutOfMemoryError(
                    "CUDA out of memory. Tried to allocate 1.00 GiB (simulated)"
                )
            return block

        path.write_text(str(with_oom_retry(run, 8)))

    keys = {item: result_key({"item": item}) for item in "abc"}
    run_shard(list("abc"), keys, tmp_path / "out", tmp_path / "store", compute, bool)
    assert used == {"a": [8], "b": [8, 4, 2], "c": [8]}


def test_device_count_override_and_single_gpu_machines_claim_nothing(tmp_path):
    environment = {"ANCHORFLOW_GPU_DEVICES": "1", "ANCHORFLOW_GPU_LOCK_DIR": str(tmp_path)}
    assert device_count(environment) == 1
    assert assign_gpus(1, environment) is None and "CUDA_VISIBLE_DEVICES" not in environment
    preset = {"ANCHORFLOW_GPU_DEVICES": "4", "CUDA_VISIBLE_DEVICES": "3"}
    assert assign_gpus(1, preset) is None and preset["CUDA_VISIBLE_DEVICES"] == "3"
    assert assign_gpus(0, {"ANCHORFLOW_GPU_DEVICES": "4"}) is None


CLAIM = textwrap.dedent(
    """
    import os, sys, time
    from anchorflow.gpu_slots import assign_gpus
    print(assign_gpus(int(sys.argv[1]), timeout_s=float(sys.argv[2])), flush=True)
    time.sleep(float(sys.argv[3]))
    """
)


def _claimer(tmp_path: Path, gpus: int, timeout: float, hold: float) -> subprocess.Popen:
    environment = {
        **os.environ,
        "ANCHORFLOW_GPU_DEVICES": "3",
        "ANCHORFLOW_GPU_LOCK_DIR": str(tmp_path),
    }
    environment.pop("CUDA_VISIBLE_DEVICES", None)
    return subprocess.Popen(
        [sys.executable, "-c", CLAIM, str(gpus), str(timeout), str(hold)],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_concurrent_jobs_get_distinct_devices_and_a_fourth_waits(tmp_path):
    holders = [_claimer(tmp_path, 1, 10, 6) for _ in range(3)]
    devices = [holder.stdout.readline().strip() for holder in holders]
    assert sorted(devices) == ["0", "1", "2"]
    waiting = _claimer(tmp_path, 1, 0.5, 0)
    assert waiting.wait(timeout=30) != 0
    assert "TimeoutError" in waiting.stderr.read()
    for holder in holders:
        holder.kill()
        holder.wait()
    freed = _claimer(tmp_path, 2, 10, 0)  # a killed holder's lock is released by the kernel
    assert freed.stdout.readline().strip() in {"0,1", "0,2", "1,2"}
    freed.wait(timeout=30)


def test_claim_rejects_impossible_requests(tmp_path):
    with pytest.raises(ValueError):
        claim_slots(3, 2, tmp_path)
