"""Requests and bytes of one hf:// acquisition against the local hub imitation
(tests/hub_imitation.py), the former path and the hub-cache path, in one run.

The imitation holds the 20 shipped real traces in the dataset's layout plus ``--chunks``
resampling folders per trace (``chunk_i/solutions.json``, as the real repository has them), so
its listing is as large as a part of the real one. *fsspec* is what acquisition did before:
``read_tree_files`` through huggingface_hub's ``HfFileSystem`` (its repository info carries
every file name). *hub cache* is ``anchorflow.data.hub.read_hub_files`` (``hf_hub_download`` per
file). Each reads the trace files on an empty cache, again (warm cache, online), then offline
(``HF_HUB_OFFLINE``; fsspec has no offline mode). Both must find the same files.

    python bench/bench_hub_requests.py [--traces 6] [--chunks 870]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from hub_imitation import HubImitation, add_math_rollouts  # noqa: E402
from huggingface_hub import HfFileSystem, constants  # noqa: E402
from real_data import PAPER_PROBLEMS, QWEN14B_ROLLOUTS, REAL_ROLLOUTS, SAMPLING_FOLDER  # noqa: E402

from anchorflow.data.hub import read_hub_files  # noqa: E402
from anchorflow.data.rollouts import TRACE_FILES, requested_traces  # noqa: E402
from anchorflow.data.sources import read_tree_files  # noqa: E402
from anchorflow.hub import parse_hub_url  # noqa: E402

SOURCE = "hf://datasets/uzaymacar/math-rollouts"


def measured(hub: HubImitation, path: str, paths: list[str]) -> tuple[int, int, int, str]:
    """One job's read of ``paths`` (a fresh filesystem instance, as a new process has)."""
    hub.reset()
    HfFileSystem.clear_instance_cache()
    try:
        if path == "fsspec":
            contents = read_tree_files(SOURCE, paths)
        else:
            contents = read_hub_files(parse_hub_url(SOURCE), paths)
        outcome = f"{sum(text is not None for text in contents.values())} files found"
    except Exception as error:  # noqa: BLE001 - reported in the table
        outcome = type(error).__name__
    listings = sum(1 for _, url, _, _ in hub.requests if url.startswith("/api/datasets"))
    return len(hub.requests), listings, sum(size for *_, size in hub.requests), outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--traces", type=int, default=6, help="traces read (2 per problem)")
    parser.add_argument("--chunks", type=int, default=870, help="resampling folders per trace")
    args = parser.parse_args()
    problems = PAPER_PROBLEMS[: max(1, args.traces // 2)]
    requests = requested_traces([QWEN14B_ROLLOUTS], problems, ["correct", "incorrect"])
    paths = [f"{r.folder(SAMPLING_FOLDER)}/{name}" for r in requests for name in TRACE_FILES]
    rows = []
    with HubImitation() as hub, tempfile.TemporaryDirectory() as cache:
        add_math_rollouts(hub, REAL_ROLLOUTS, "no-folder-left-out", extra_chunks=args.chunks)
        repo = hub.repos[("dataset", "uzaymacar/math-rollouts")]
        files = len(repo.commits[repo.refs["main"]])
        constants.ENDPOINT = hub.endpoint
        template = "/{repo_id}/resolve/{revision}/{filename}"
        constants.HUGGINGFACE_CO_URL_TEMPLATE = hub.endpoint + template
        for path in ("fsspec", "hub cache"):
            constants.HF_HUB_CACHE = str(Path(cache) / path)
            states = (("empty cache", False), ("warm cache", False), ("offline", True))
            for state, offline in states:
                constants.HF_HUB_OFFLINE = offline
                rows.append((f"{path}, {state}", *measured(hub, path, paths)))
    print(f"{len(requests)} traces ({len(paths)} files asked for) from a repository of {files}")
    print("| path | requests | per trace | info/tree/paths-info | bytes received | result |")
    print("|---|---|---|---|---|---|")
    for label, count, listings, received, outcome in rows:
        per_trace = count / len(requests)
        print(f"| {label} | {count} | {per_trace:.1f} | {listings} | {received:,} | {outcome} |")
    outcomes = {label: outcome for label, *_, outcome in rows}
    expected = outcomes["fsspec, empty cache"]
    disagree = [
        label
        for label, outcome in outcomes.items()
        if label != "fsspec, offline" and outcome != expected
    ]
    if disagree:
        raise SystemExit(f"the paths disagree with the former one ({expected}): {disagree}")


if __name__ == "__main__":
    main()
