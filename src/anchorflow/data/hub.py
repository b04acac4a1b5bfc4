"""Files of an ``hf://`` dataset source, read through the hub's local cache.

Each file is fetched with ``huggingface_hub.hf_hub_download``: no repository listing is ever
requested (the real math-rollouts repository's listing is megabytes), every file lands in the hub
cache (``HF_HOME``, ``HF_HUB_CACHE``), and with ``HF_HUB_OFFLINE=1`` the same files are read from
the cache with no request. A file the repository lacks is ``None`` (its trace is excluded with
the reason); whatever no retry can mend raises :class:`anchorflow.hub.HubSourceError`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from anchorflow.data.sources import FileText, decode_utf8
from anchorflow.hub import HubLocation, HubSourceError, explained, offline_hint

COMMIT_SHA = re.compile(r"[0-9a-f]{40}")

LOG = logging.getLogger(__name__)


def _cached(location: HubLocation, filename: str) -> str | None | bool:
    """The cached file's path, ``False`` when the cache records that the file does not exist at
    this revision, ``None`` when the cache knows nothing."""
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.file_download import _CACHED_NO_EXIST

    found = try_to_load_from_cache(
        location.repo_id, filename, revision=location.revision, repo_type=location.repo_type
    )
    if found is _CACHED_NO_EXIST:
        return False
    return found if isinstance(found, str) else None


def _download(location: HubLocation, filename: str) -> str | None:
    """The local path of ``filename`` (downloaded into the hub cache when needed); ``None`` when
    the repository has no such file at the revision."""
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import RemoteEntryNotFoundError

    offline = constants.is_offline_mode()
    if offline or COMMIT_SHA.fullmatch(location.revision):
        # A commit never changes: what the cache says about it is final, online too.
        cached = _cached(location, filename)
        if cached is False:
            return None
        if isinstance(cached, str):
            return cached
        if offline:
            raise HubSourceError(f"{filename}: {offline_hint(location)}")
    with explained(location, filename):
        try:
            return hf_hub_download(
                location.repo_id,
                filename,
                repo_type=location.repo_type,
                revision=location.revision,
            )
        except RemoteEntryNotFoundError:
            # Only the hub's own word (404 EntryNotFound). LocalEntryNotFoundError (offline, or
            # a connection failure) shares the EntryNotFoundError base: it is no missing file.
            return None


def snapshot_commit(local: str, filename: str) -> str | None:
    """The commit of a file the cache returned: its path is ``.../snapshots/{commit}/{filename}``
    (the hub cache's documented layout); ``None`` when it is not."""
    folder = Path(local).parents[len(Path(filename).parts) - 1]
    return folder.name if COMMIT_SHA.fullmatch(folder.name) else None


def read_hub_files(location: HubLocation, paths: Iterable[str]) -> dict[str, FileText]:
    """Read ``paths`` (relative to the location's folder) through the hub cache; a file the
    repository lacks is ``None``. Raises ``HubSourceError`` for what no retry can mend.

    A branch or tag is resolved once, by the first file found, and every later file is read at
    that commit: one acquisition reads one snapshot even if the branch moves meanwhile, and a file
    the cache holds for that commit costs no request.
    """
    contents: dict[str, FileText] = {}
    pinned = location
    for path in paths:
        filename = pinned.filename(path)
        local = _download(pinned, filename)
        contents[path] = None if local is None else decode_utf8(Path(local).read_bytes())
        commit = snapshot_commit(local, filename) if local is not None else None
        if commit is not None and pinned.revision != commit:
            LOG.info("%s resolved to commit %s", location.describe(), commit)
            pinned = replace(location, revision=commit)
    return contents
