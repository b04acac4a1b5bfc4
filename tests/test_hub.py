"""hf:// acquisition against a local imitation of the hub's HTTP API (tests/hub_imitation.py):
first runs, pinned tags and commits, offline reruns from the cache, wrong repositories,
revisions and files, transient and permanent faults, and the requests each costs."""

from __future__ import annotations

import json

import pytest
import torch
from hub_imitation import HubImitation, add_math_rollouts
from huggingface_hub import HfFileSystem, constants
from real_data import PAPER_PROBLEMS, QWEN14B_ROLLOUTS, REAL_ROLLOUTS, SAMPLING_FOLDER

from anchorflow.data.hub import read_hub_files
from anchorflow.data.rollouts import TRACE_FILES, acquire, requested_traces
from anchorflow.hub import HubLocation, HubSourceError, parse_hub_url
from anchorflow.models.loading import load_model
from anchorflow.models.prefetch import prefetch_model
from anchorflow.models.tiny import random_causal_lm, special_token_ids, word_level_tokenizer

REPO = "uzaymacar/math-rollouts"

PROBLEMS = PAPER_PROBLEMS[:3]


def requests_for(problems=PROBLEMS):
    return requested_traces([QWEN14B_ROLLOUTS], problems, ["correct", "incorrect"])


@pytest.fixture(scope="module")
def local_records():
    return acquire(str(REAL_ROLLOUTS), requests_for(PAPER_PROBLEMS), SAMPLING_FOLDER)[0]


def point_client_at(monkeypatch, hub: HubImitation, cache, offline: bool = False) -> None:
    """What HF_ENDPOINT, HF_HUB_CACHE and HF_HUB_OFFLINE set when huggingface_hub is imported
    (tests/test_hub_process.py sets the variables themselves, in a fresh process)."""
    template = hub.endpoint + "/{repo_id}/resolve/{revision}/{filename}"
    monkeypatch.setattr(constants, "ENDPOINT", hub.endpoint)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(cache / "no-token"))


@pytest.fixture
def hub(tmp_path, monkeypatch):
    with HubImitation() as imitation:
        shas = add_math_rollouts(imitation, REAL_ROLLOUTS, f"problem_{PROBLEMS[0]}/")
        imitation.first_sha, imitation.main_sha = shas
        point_client_at(monkeypatch, imitation, tmp_path / "cache")
        yield imitation


def test_parse_hub_url():
    assert parse_hub_url(f"hf://datasets/{REPO}") == HubLocation("dataset", REPO, "main", "")
    assert parse_hub_url(f"hf://datasets/{REPO}@v1.0/sub/dir") == HubLocation(
        "dataset", REPO, "v1.0", "sub/dir"
    )
    assert parse_hub_url("hf://datasets/o/n@refs%2Fpr%2F1").revision == "refs/pr/1"
    assert parse_hub_url("hf://o/n").repo_type == "model"
    assert parse_hub_url("/local/folder") is None
    assert parse_hub_url("s3://bucket/x") is None
    with pytest.raises(ValueError, match="owner/name"):
        parse_hub_url("hf://datasets/justone")
    with pytest.raises(ValueError, match="empty revision"):
        parse_hub_url("hf://datasets/o/n@")


def test_first_run_equals_the_local_folder_and_fetches_only_the_trace_files(hub, local_records):
    records, exclusions = acquire(f"hf://datasets/{REPO}", requests_for(), SAMPLING_FOLDER)
    assert exclusions == []
    assert records == [r for r in local_records if r["problem"] in PROBLEMS]
    # No listing of the repository (its info carries every file name), no resampling folder.
    assert hub.count(pattern="^/api/(datasets|models)/") == 0
    assert hub.count(pattern="chunk_") == 0
    # One HEAD per wanted file; one GET per distinct content among those that exist (a blob
    # already in the cache, e.g. a problem.json shared by two traces, is linked, not fetched).
    files = hub.repos[("dataset", REPO)].commits[hub.main_sha]
    wanted = [f"{r.folder(SAMPLING_FOLDER)}/{name}" for r in requests_for() for name in TRACE_FILES]
    assert hub.count("HEAD", "/resolve/") == len(wanted)
    assert hub.count("GET", "/resolve/") == len({files[p] for p in wanted if p in files})


def test_a_rerun_online_asks_only_where_the_branch_points(hub, local_records):
    first = acquire(f"hf://datasets/{REPO}", requests_for(), SAMPLING_FOLDER)
    hub.reset()
    assert acquire(f"hf://datasets/{REPO}", requests_for(), SAMPLING_FOLDER) == first
    # The first file's HEAD resolves main to its commit; the rest is read at that commit.
    assert hub.requests == [("HEAD", hub.requests[0][1], 200, 0)]


def test_a_moved_branch_is_followed_by_the_next_acquisition(hub):
    source, requests = f"hf://datasets/{REPO}", requests_for()
    acquire(source, requests, SAMPLING_FOLDER)
    repo = hub.repos[("dataset", REPO)]
    files = dict(repo.commits[hub.main_sha])
    problem = f"{requests[0].folder(SAMPLING_FOLDER)}/problem.json"
    edited = json.loads(files[problem])
    edited["problem"] = "Edited. " + edited["problem"]
    files[problem] = json.dumps(edited).encode()
    repo.commit(files, ref="main")
    hub.reset()
    records, _ = acquire(source, requests, SAMPLING_FOLDER)
    assert records[0]["problem_text"].startswith("Edited. ")
    assert records[1]["problem_text"] == records[0]["problem_text"][len("Edited. ") :]
    assert hub.count("GET", "/resolve/") == 1  # only the changed file's content is new


def test_a_rerun_offline_reads_the_cache_with_no_request(hub, monkeypatch, local_records):
    online = acquire(f"hf://datasets/{REPO}", requests_for(), SAMPLING_FOLDER)
    hub.reset()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    offline = acquire(f"hf://datasets/{REPO}", requests_for(), SAMPLING_FOLDER)
    assert offline == online
    assert hub.requests == []


def test_offline_without_a_cache_names_the_fix(hub, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubSourceError, match="HF_HUB_OFFLINE is set.*snakemake prefetch") as error:
        acquire(f"hf://datasets/{REPO}", requests_for(), SAMPLING_FOLDER)
    assert REPO in str(error.value) and "main" in str(error.value)
    assert hub.requests == []


def test_pinned_tag_and_commit(hub, local_records):
    tagged, excluded = acquire(f"hf://datasets/{REPO}@v1.0", requests_for(), SAMPLING_FOLDER)
    assert {(e.trace, e.reason) for e in excluded} == {
        (f"{PROBLEMS[0]}_correct", "missing_file"),
        (f"{PROBLEMS[0]}_incorrect", "missing_file"),
    }
    assert len(tagged) == len(requests_for()) - 2
    pinned, _ = acquire(f"hf://datasets/{REPO}@{hub.main_sha}", requests_for(), SAMPLING_FOLDER)
    assert pinned == [r for r in local_records if r["problem"] in PROBLEMS]
    hub.reset()  # a commit never changes: a second read of it is served by the cache alone
    again, _ = acquire(f"hf://datasets/{REPO}@{hub.main_sha}", requests_for(), SAMPLING_FOLDER)
    assert again == pinned and hub.requests == []


@pytest.mark.parametrize(
    ("source", "cause"),
    [
        ("hf://datasets/uzaymacar/math-rollout", "does not exist or is not accessible"),
        (f"hf://datasets/{REPO}@nope", "revision 'nope' does not exist"),
        ("hf://datasets/someone/private-rollouts", "private without a token"),
    ],
)
def test_a_wrong_repository_or_revision_stops_at_once(hub, source, cause):
    with pytest.raises(HubSourceError, match=cause) as error:
        acquire(source, requests_for(), SAMPLING_FOLDER)
    location = parse_hub_url(source)
    assert location.repo_id in str(error.value) and location.revision in str(error.value)
    assert "dataset.source" in str(error.value)
    assert len(hub.requests) == 1  # the first file's answer is final: nothing more is asked


def test_a_missing_file_in_an_existing_trace_is_an_exclusion(hub):
    repo = hub.repos[("dataset", REPO)]
    files = dict(repo.commits[hub.main_sha])
    gone = next(p for p in files if f"problem_{PROBLEMS[1]}/base_solution.json" in p)
    del files[gone]
    repo.commit(files, ref="main")
    records, exclusions = acquire(f"hf://datasets/{REPO}", requests_for(), SAMPLING_FOLDER)
    assert len(records) == len(requests_for()) - 1
    (exclusion,) = exclusions
    assert exclusion.reason == "missing_file" and "base_solution.json" in exclusion.detail


def no_backoff_waits(monkeypatch) -> None:
    import huggingface_hub.utils._http as http

    monkeypatch.setattr(http.time, "sleep", lambda seconds: None)


def test_a_transient_503_is_retried_and_a_404_is_not(hub, monkeypatch):
    no_backoff_waits(monkeypatch)
    location = parse_hub_url(f"hf://datasets/{REPO}")
    folder = f"{QWEN14B_ROLLOUTS}/{SAMPLING_FOLDER}/correct_base_solution/problem_{PROBLEMS[0]}"
    hub.fail(f"{folder}/problem.json$", 503, times=1, method="HEAD")
    contents = read_hub_files(location, [f"{folder}/problem.json", f"{folder}/chunks.json"])
    assert contents[f"{folder}/problem.json"].startswith("{")
    assert contents[f"{folder}/chunks.json"] is None
    assert hub.count("HEAD", "problem.json$") == 2  # the 503, then the retry
    assert hub.count("HEAD", "chunks.json$") == 1  # EntryNotFound is final


def test_a_persistent_5xx_is_a_hub_error_after_the_client_retries(hub, monkeypatch):
    no_backoff_waits(monkeypatch)
    location = parse_hub_url(f"hf://datasets/{REPO}")
    hub.fail("problem.json$", 503, times=100)
    with pytest.raises(HubSourceError, match="retried transient faults"):
        read_hub_files(location, ["x/problem.json"])
    assert 2 < hub.count("HEAD") < 10  # bounded: the client's backoff, then a clear error


def test_hf_file_system_reads_through_the_imitation(hub):
    """The imitation's listing endpoints (info, tree pages, paths-info) follow the real API far
    enough for huggingface_hub's own fsspec filesystem: what acquisition used before."""
    hub.page_size = 3  # the real API pages at 1000 entries; here the folder takes 4 pages
    fs = HfFileSystem(skip_instance_cache=True)
    root = f"datasets/{REPO}/{QWEN14B_ROLLOUTS}/{SAMPLING_FOLDER}/correct_base_solution"
    folders = fs.ls(root, detail=False)
    assert len(folders) == len(PAPER_PROBLEMS)
    text = fs.cat_file(f"{root}/problem_{PROBLEMS[0]}/problem.json").decode()
    assert '"problem"' in text
    assert hub.count(pattern="/tree/") >= 4


def tiny_model_export(folder, max_shard_size: str | None):
    """A tiny random Llama and its tokenizer, saved as a hub repository holds them."""
    model = random_causal_lm("llama", **special_token_ids())
    tokenizer = word_level_tokenizer(["<pad>", "<eos>", "<bos>", "<unk>", "two", "plus"])
    options = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.save_pretrained(folder, **options)
    tokenizer.save_pretrained(folder)
    files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*")}
    return model, {path: data for path, data in files.items() if (folder / path).is_file()}


@pytest.mark.parametrize("max_shard_size", [None, "40KB"], ids=["single", "sharded"])
def test_a_hub_model_prefetched_then_loaded_offline(hub, monkeypatch, tmp_path, max_shard_size):
    model, files = tiny_model_export(tmp_path / "export", max_shard_size)
    assert ("model.safetensors.index.json" in files) == (max_shard_size is not None)
    sha = hub.add_repo("model", "anchorflow-tests/tiny-llama").commit(files)
    spec = {"name": "tiny", "source": "hub", "hf_id": "anchorflow-tests/tiny-llama"}
    spec |= {"revision": "main", "dtype": "float32"}
    record = prefetch_model(spec)
    (repository,) = record["repositories"]
    assert repository["commit"] == sha and set(repository["files"]) == set(files)
    assert hub.count("GET", "/lfs/") == sum(path.endswith(".safetensors") for path in files)
    hub.reset()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    loaded, tokenizer = load_model(spec, device="cpu")
    assert hub.requests == []
    assert tokenizer("two plus two")["input_ids"] == [4, 5, 4]
    expected, weights = model.state_dict(), loaded.state_dict()
    assert expected.keys() == weights.keys()
    assert all(torch.equal(expected[name], weights[name]) for name in expected)


def test_a_wrong_model_revision_names_the_config_key(hub):
    hub.add_repo("model", "anchorflow-tests/tiny-llama").commit({"config.json": b"{}"})
    spec = {"name": "tiny", "source": "hub", "hf_id": "anchorflow-tests/tiny-llama"}
    with pytest.raises(HubSourceError, match=r"revision 'v9' does not exist.*models\[tiny\]"):
        prefetch_model(spec | {"revision": "v9"})
    with pytest.raises(HubSourceError, match="does not exist or is not accessible"):
        prefetch_model(spec | {"hf_id": "anchorflow-tests/no-such-model"})


def test_the_imitation_serves_ranges_and_lfs_redirects(hub):
    """What the client may ask of the real hub beyond a plain GET: a byte range (206) and, for an
    LFS file, a redirect to a CDN on another host carrying the file's sha256 and size."""
    import hashlib
    import urllib.request

    weights = b"\x00\x01" * 1000
    hub.add_repo("model", "o/m").commit({"model.safetensors": weights, "config.json": b"{}"})
    ask = urllib.request.Request(f"{hub.endpoint}/o/m/resolve/main/config.json")
    ask.add_header("Range", "bytes=1-")
    with urllib.request.urlopen(ask) as answer:
        assert answer.status == 206 and answer.read() == b"}"
        assert answer.headers["Content-Range"] == "bytes 1-1/2"

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as redirect:
        opener.open(f"{hub.endpoint}/o/m/resolve/main/model.safetensors")
    headers = redirect.value.headers
    assert redirect.value.code == 302
    assert headers["X-Linked-Etag"] == f'"{hashlib.sha256(weights).hexdigest()}"'
    assert headers["X-Linked-Size"] == str(len(weights))
    assert headers["Location"].startswith("http://127.0.0.2:")
    with urllib.request.urlopen(headers["Location"]) as blob:
        assert blob.read() == weights
