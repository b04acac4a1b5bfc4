"""A local imitation of the Hugging Face hub's HTTP API, on loopback only, for the tests.

It serves git-like repositories (commits, branches, tags; datasets and models) through the
endpoints ``huggingface_hub`` calls, with the real API's status codes and headers:

- ``HEAD|GET /[datasets/]{repo}/resolve/{revision}/{path}``: ``X-Repo-Commit``, a quoted
  ``ETag`` (the git blob id), ``Content-Length``, ``Accept-Ranges`` and range requests (206); an
  LFS file (``.safetensors`` or at least :data:`LFS_THRESHOLD` bytes) answers ``302`` to a CDN on
  another loopback host (127.0.0.2) with ``X-Linked-Etag`` (its sha256) and ``X-Linked-Size``;
- ``GET /api/{datasets|models}/{repo}[/revision/{revision}]``: repository info with the full
  ``siblings`` listing (``expand=`` limits the keys, as on the hub);
- ``GET /api/{type}/{repo}/tree/{revision}[/{path}]``: ``recursive``, pages of
  :attr:`HubImitation.page_size` entries linked by ``Link: <...>; rel="next"`` (``cursor``);
- ``POST /api/{type}/{repo}/paths-info/{revision}``: the entries that exist of ``paths``;
- ``GET /api/agent-harnesses``: the registry the client fetches once a day for its user agent;
- errors as ``X-Error-Code``: ``RepoNotFound`` (401, also for a private repository without a
  token), ``GatedRepo`` (403), ``RevisionNotFound`` and ``EntryNotFound`` (404, with
  ``X-Repo-Commit``).

Every request is recorded (method, path, status, body bytes) and faults can be injected
(:meth:`HubImitation.fail`), so the tests count what a client asks for.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

LFS_THRESHOLD = 10 * 1024 * 1024

HUB_HOST = "127.0.0.1"

CDN_HOST = "127.0.0.2"


def git_blob_id(data: bytes) -> str:
    """The git object id of a file's bytes (the hub's ETag of a non-LFS file)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Repo:
    """A repository: commits (sha -> {path: bytes}) and refs (branch or tag -> sha)."""

    repo_type: str
    repo_id: str
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)
    private: bool = False
    gated: bool = False

    def commit(self, files: Mapping[str, bytes], ref: str = "main") -> str:
        """Add a commit holding ``files`` and point ``ref`` at it; returns its sha."""
        digest = hashlib.sha1(f"{self.repo_id}|{len(self.commits)}".encode())
        for path in sorted(files):
            digest.update(path.encode() + b"\0" + hashlib.sha256(files[path]).digest())
        sha = digest.hexdigest()
        self.commits[sha] = dict(files)
        self.refs[ref] = sha
        return sha

    def resolve(self, revision: str) -> str | None:
        if revision in self.refs:
            return self.refs[revision]
        return revision if revision in self.commits else None


def is_lfs(path: str, data: bytes) -> bool:
    return path.endswith((".safetensors", ".bin")) or len(data) >= LFS_THRESHOLD


def tree_entries(files: Mapping[str, bytes], folder: str, recursive: bool) -> list[dict]:
    """The hub's tree listing of ``folder``: files and folders, sorted by path."""
    prefix = f"{folder}/" if folder else ""
    entries: dict[str, dict] = {}
    for path, data in files.items():
        if not path.startswith(prefix):
            continue
        rest = path[len(prefix) :].split("/")
        for depth in range(1, len(rest)):
            if recursive or depth == 1:
                sub = prefix + "/".join(rest[:depth])
                entries[sub] = {"type": "directory", "oid": git_blob_id(sub.encode()), "size": 0}
        if recursive or len(rest) == 1:
            entry = {"type": "file", "oid": git_blob_id(data), "size": len(data)}
            if is_lfs(path, data):
                sha256 = hashlib.sha256(data).hexdigest()
                pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\n"
                pointer += f"size {len(data)}\n"
                entry["lfs"] = {"oid": sha256, "size": len(data), "pointerSize": len(pointer)}
            entries[path] = entry
    return [{**entries[path], "path": path} for path in sorted(entries)]


@dataclass
class Fault:
    method: str
    pattern: re.Pattern
    status: int
    remaining: int


class HubImitation:
    """The server: ``with HubImitation() as hub: hub.endpoint``; ``hub.requests`` lists every
    request as ``(method, path, status, body_bytes)``."""

    def __init__(self, page_size: int = 1000) -> None:
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[tuple[str, str, int, int]] = []
        self.faults: list[Fault] = []
        self.page_size = page_size
        self.lock = threading.Lock()
        self.servers: list[ThreadingHTTPServer] = []

    def add_repo(self, repo_type: str, repo_id: str, **options) -> Repo:
        repo = Repo(repo_type, repo_id, **options)
        self.repos[(repo_type, repo_id)] = repo
        return repo

    def fail(self, pattern: str, status: int, times: int = 1, method: str = "*") -> None:
        """Answer the next ``times`` requests whose path matches ``pattern`` with ``status``."""
        self.faults.append(Fault(method, re.compile(pattern), status, times))

    def count(self, method: str = "*", pattern: str = "") -> int:
        """How many recorded requests match ``method`` and contain ``pattern`` in their path."""
        return sum(
            1 for m, path, _, _ in self.requests if method in ("*", m) and re.search(pattern, path)
        )

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()

    @property
    def endpoint(self) -> str:
        return f"http://{HUB_HOST}:{self.servers[0].server_address[1]}"

    def cdn_url(self, sha256: str) -> str:
        return f"http://{CDN_HOST}:{self.servers[1].server_address[1]}/lfs/{sha256}"

    def __enter__(self) -> HubImitation:
        handler = type("Handler", (HubHandler,), {"hub": self})
        for host in (HUB_HOST, CDN_HOST):
            server = ThreadingHTTPServer((host, 0), handler)
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
            self.servers.append(server)
        return self

    def __exit__(self, *exc) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()

    def blob(self, sha256: str) -> bytes | None:
        for repo in self.repos.values():
            for files in repo.commits.values():
                for data in files.values():
                    if hashlib.sha256(data).hexdigest() == sha256:
                        return data
        return None


REPO_PATH = r"(?P<prefix>datasets/|spaces/)?(?P<repo>[^/]+/[^/]+)"

RESOLVE = re.compile(rf"^/{REPO_PATH}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")

API = re.compile(
    r"^/api/(?P<kind>datasets|models|spaces)/(?P<repo>[^/]+/[^/]+)"
    r"(?:/(?P<action>revision|tree|paths-info)/(?P<rev>[^/]+)(?:/(?P<path>.*))?)?$"
)

KINDS = {"datasets": "dataset", "models": "model", "spaces": "space"}


class HubHandler(BaseHTTPRequestHandler):
    hub: HubImitation
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # silence the default stderr log
        pass

    def do_HEAD(self) -> None:
        self.route("HEAD")

    def do_GET(self) -> None:
        self.route("GET")

    def do_POST(self) -> None:
        self.route("POST")

    def send(self, status: int, body: bytes = b"", headers: Mapping[str, str] | None = None):
        sent = 0 if self.command == "HEAD" else len(body)
        with self.hub.lock:  # recorded before the client can see the answer
            self.hub.requests.append((self.command, urlsplit(self.path).path, status, sent))
        self.send_response(status)
        headers = dict(headers or {})
        headers.setdefault("Content-Length", str(len(body)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if sent:
            self.wfile.write(body)

    def error(self, status: int, code: str, message: str, commit: str | None = None) -> None:
        headers = {"X-Error-Code": code, "X-Error-Message": message}
        if commit:
            headers["X-Repo-Commit"] = commit
        body = json.dumps({"error": message}).encode()
        self.send(status, body, {**headers, "Content-Type": "application/json"})

    def json(self, payload, headers: Mapping[str, str] | None = None) -> None:
        body = json.dumps(payload).encode()
        self.send(200, body, {"Content-Type": "application/json", **(headers or {})})

    def route(self, method: str) -> None:
        url = urlsplit(self.path)
        for fault in self.hub.faults:
            if fault.remaining and fault.method in ("*", method) and fault.pattern.search(url.path):
                fault.remaining -= 1
                self.error(fault.status, "Injected", f"injected fault {fault.status}")
                return
        if url.path == "/api/agent-harnesses":  # the client's once-a-day user-agent registry
            self.json({"standardEnvVars": [], "harnesses": {}})
            return
        if url.path.startswith("/lfs/"):
            data = self.hub.blob(url.path[len("/lfs/") :])
            self.file(data, {}) if data is not None else self.send(404)
            return
        resolve, api = RESOLVE.match(url.path), API.match(url.path)
        if resolve:
            kind = KINDS.get((resolve["prefix"] or "models/").rstrip("/"), "model")
            self.resolve(kind, resolve["repo"], unquote(resolve["rev"]), unquote(resolve["path"]))
        elif api:
            self.api(method, api, parse_qs(url.query))
        else:
            self.send(404)

    def find(self, kind: str, repo_id: str, revision: str) -> tuple[Repo, str] | None:
        """The repository and commit, or ``None`` after answering with the hub's error."""
        repo = self.hub.repos.get((kind, repo_id))
        authorised = self.headers.get("authorization", "").startswith("Bearer ")
        if repo is None or (repo.private and not authorised):
            self.error(401, "RepoNotFound", "Repository not found")
            return None
        if repo.gated and not authorised:
            self.error(403, "GatedRepo", "Access to this repository is restricted")
            return None
        sha = repo.resolve(revision)
        if sha is None:
            self.error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            return None
        return repo, sha

    def file(self, data: bytes, headers: dict[str, str]) -> None:
        headers = {**headers, "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        ranged = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if ranged:
            start = int(ranged[1])
            end = int(ranged[2]) if ranged[2] else len(data) - 1
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            self.send(206, data[start : end + 1], headers)
        else:
            self.send(200, data, headers)

    def resolve(self, kind: str, repo_id: str, revision: str, path: str) -> None:
        found = self.find(kind, repo_id, revision)
        if found is None:
            return
        repo, sha = found
        data = repo.commits[sha].get(path)
        if data is None:
            self.error(404, "EntryNotFound", f"{path} does not exist on {revision}", commit=sha)
            return
        headers = {"X-Repo-Commit": sha, "ETag": f'"{git_blob_id(data)}"'}
        if is_lfs(path, data):
            sha256 = hashlib.sha256(data).hexdigest()
            headers |= {"X-Linked-Etag": f'"{sha256}"', "X-Linked-Size": str(len(data))}
            self.send(302, b"", {**headers, "Location": self.hub.cdn_url(sha256)})
        else:
            self.file(data, headers)

    def api(self, method: str, match: re.Match, query: dict[str, list[str]]) -> None:
        kind, action = KINDS[match["kind"]], match["action"]
        revision = unquote(match["rev"] or "main")
        found = self.find(kind, match["repo"], revision)
        if found is None:
            return
        repo, sha = found
        files = repo.commits[sha]
        if action in (None, "revision"):
            info = {
                "_id": sha[:24],
                "id": repo.repo_id,
                "sha": sha,
                "private": repo.private,
                "gated": repo.gated,
                "siblings": [{"rfilename": path} for path in sorted(files)],
            }
            expand = query.get("expand") or query.get("expand[]")
            self.json({k: v for k, v in info.items() if not expand or k in expand + ["_id", "id"]})
        elif action == "tree":
            self.tree(repo, sha, unquote(match["path"] or "").strip("/"), query)
        elif method == "POST":
            length = int(self.headers.get("Content-Length", 0))
            raw = self.rfile.read(length).decode()
            if self.headers.get("Content-Type", "").startswith("application/json"):
                paths = json.loads(raw).get("paths", [])
            else:
                paths = parse_qs(raw).get("paths", [])
            listed = {e["path"]: e for e in tree_entries(files, "", recursive=True)}
            self.json([listed[p] for p in paths if p in listed])
        else:
            self.send(405)

    def tree(self, repo: Repo, sha: str, folder: str, query: dict[str, list[str]]) -> None:
        recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
        entries = tree_entries(repo.commits[sha], folder, recursive)
        if folder and not entries:
            self.error(404, "EntryNotFound", f"{folder} does not exist", commit=sha)
            return
        start = int(query.get("cursor", ["0"])[0])
        page = entries[start : start + self.hub.page_size]
        headers = {}
        if start + self.hub.page_size < len(entries):
            kind = {"dataset": "datasets", "model": "models", "space": "spaces"}[repo.repo_type]
            rest = f"/api/{kind}/{repo.repo_id}/tree/{quote(sha)}/{folder}".rstrip("/")
            nxt = f"{self.hub.endpoint}{rest}?recursive={str(recursive).lower()}"
            headers["Link"] = f'<{nxt}&cursor={start + self.hub.page_size}>; rel="next"'
        self.json(page, headers)


def rollout_files(root: Path, extra_chunks: int = 0) -> dict[str, bytes]:
    """Every file under ``root`` keyed by its relative path, plus ``extra_chunks`` resampling
    folders per trace (``chunk_{i}/solutions.json``, as in the real dataset) that no acquisition
    should touch."""
    files = {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    for folder in sorted({path.rsplit("/", 1)[0] for path in files if "/problem_" in path}):
        for index in range(extra_chunks):
            files[f"{folder}/chunk_{index}/solutions.json"] = b'[{"rollout": "..."}]' * 40
    return files


def add_math_rollouts(
    hub: HubImitation, root: Path, left_out_of_tag: str, extra_chunks: int = 5
) -> tuple[str, str]:
    """``uzaymacar/math-rollouts`` from the traces under ``root``: tag ``v1.0`` on a first commit
    without the folders containing ``left_out_of_tag``, ``main`` on a second with everything,
    and a private copy ``someone/private-rollouts``. Returns the two commits' shas."""
    files = rollout_files(root, extra_chunks)
    repo = hub.add_repo("dataset", "uzaymacar/math-rollouts")
    first = repo.commit({k: v for k, v in files.items() if left_out_of_tag not in k}, ref="v1.0")
    main = repo.commit(files, ref="main")
    hub.add_repo("dataset", "someone/private-rollouts", private=True).commit(files)
    return first, main
