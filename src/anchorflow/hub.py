"""Hugging Face hub locations and the errors that no retry can mend, shared by the dataset
acquisition (:mod:`anchorflow.data.hub`) and the model pre-fetch
(:mod:`anchorflow.models.prefetch`).

Transient faults (connection errors, timeouts, 429 and 5xx) are retried by the client itself with
backoff (``huggingface_hub``'s ``http_backoff``); what is left when they run out, and every
permanent fault (no repository, no revision, gated, offline without a cache), becomes a
:class:`HubSourceError` naming the repository, the revision and the fix.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import unquote

REPO_TYPE_PREFIXES = {"datasets": "dataset", "models": "model", "spaces": "space"}


class HubSourceError(RuntimeError):
    """The hub cannot serve the source at all: retrying the same request cannot help."""


@dataclass(frozen=True)
class HubLocation:
    """A folder of a hub repository at a revision; ``setting`` names the config key that chose
    it, for the error messages."""

    repo_type: str
    repo_id: str
    revision: str
    folder: str = ""
    setting: str = "dataset.source"

    def describe(self) -> str:
        """``dataset uzaymacar/math-rollouts at revision main``."""
        return f"{self.repo_type} {self.repo_id} at revision {self.revision}"

    def filename(self, path: str) -> str:
        """The path of ``path`` (relative to the folder) inside the repository."""
        return f"{self.folder}/{path}" if self.folder else path


def parse_hub_url(source: str) -> HubLocation | None:
    """The repository, revision and folder of an ``hf://`` URL; ``None`` for any other source.

    ``hf://datasets/owner/name@v1.0/sub/folder``; a revision containing ``/`` is written
    URL-encoded (``@refs%2Fconvert%2Fparquet``), as ``HfFileSystem`` writes it. A URL without
    the ``datasets/`` or ``spaces/`` prefix names a model repository.
    """
    if not source.startswith("hf://"):
        return None
    parts = [part for part in source[len("hf://") :].split("/") if part]
    repo_type = "model"
    if parts and parts[0] in REPO_TYPE_PREFIXES:
        repo_type = REPO_TYPE_PREFIXES[parts.pop(0)]
    if len(parts) < 2:
        raise ValueError(f"{source}: an hf:// source needs owner/name, e.g. hf://datasets/o/n")
    owner, name = parts[0], parts[1]
    revision = "main"
    if "@" in name:
        name, revision = name.split("@", 1)
        revision = unquote(revision)
        if not revision:
            raise ValueError(f"{source}: empty revision after '@'")
    return HubLocation(repo_type, f"{owner}/{name}", revision, "/".join(parts[2:]))


def fix_hint(location: HubLocation) -> str:
    return (
        f"check {location.setting} (the repository id and the revision: a branch, a tag or a "
        f"40-character commit sha) and that {location.repo_id} is readable with your token "
        f"(HF_TOKEN or `hf auth login`; private and gated repositories need one)"
    )


def offline_hint(location: HubLocation) -> str:
    return (
        f"HF_HUB_OFFLINE is set and the hub cache holds no copy of {location.describe()}: run "
        f"`snakemake prefetch` once with network access (on a cluster, on the login node, with "
        f"the same HF_HOME), or unset HF_HUB_OFFLINE"
    )


@contextmanager
def explained(location: HubLocation, what: str) -> Iterator[None]:
    """Turn the hub client's permanent errors about ``what`` into :class:`HubSourceError`s."""
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = location.describe()
    try:
        yield
    except RevisionNotFoundError as error:
        raise HubSourceError(
            f"{where}: the revision {location.revision!r} does not exist: {fix_hint(location)}"
        ) from error
    except GatedRepoError as error:
        raise HubSourceError(
            f"{where}: the repository is gated and this token has no access: accept its "
            f"conditions on the hub, then {fix_hint(location)}"
        ) from error
    except RepositoryNotFoundError as error:
        raise HubSourceError(
            f"{where}: the repository does not exist or is not accessible (private without a "
            f"token): {fix_hint(location)}"
        ) from error
    except LocalEntryNotFoundError as error:
        from huggingface_hub import constants

        if constants.is_offline_mode():
            raise HubSourceError(f"{what}: {offline_hint(location)}") from error
        cause = error.__cause__ or error
        detail = str(cause).splitlines()[0] if str(cause) else ""
        raise HubSourceError(
            f"{where}: {what} could not be fetched and is not in the hub cache "
            f"({type(cause).__name__}: {detail}); the client retried transient faults with "
            f"backoff: rerun when the hub is reachable"
        ) from error
