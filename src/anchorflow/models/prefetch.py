"""Hub models fetched into the hub cache before any model job runs (rule ``prefetch_model``).

On a cluster the rule runs on the login node (a ``localrule``), which has network access; the
model jobs on the compute nodes then load from the same cache (a shared ``HF_HOME``) with
``HF_HUB_OFFLINE=1`` and make no request (docs/CLUSTER.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from anchorflow.hub import HubLocation, explained


def hub_repositories(spec: dict[str, Any]) -> list[HubLocation]:
    """The hub repositories a model spec loads: the model's, and a tokenizer override given as
    a hub id (not a local folder)."""
    if spec.get("source") != "hub":
        return []
    name = spec.get("name")
    repos = [
        HubLocation("model", spec["hf_id"], spec.get("revision", "main"), "", f"models[{name}]")
    ]
    tokenizer = spec.get("tokenizer")
    if tokenizer and not Path(tokenizer).expanduser().exists():
        repos.append(HubLocation("model", tokenizer, "main", "", f"models[{name}].tokenizer"))
    return repos


def snapshot(location: HubLocation) -> dict[str, Any]:
    """Download (or find in the cache) one repository at its revision; returns its id, the
    revision asked for, the commit it resolved to and its files."""
    from huggingface_hub import snapshot_download

    with explained(location, "the model snapshot"):
        folder = Path(
            snapshot_download(location.repo_id, revision=location.revision, repo_type="model")
        )
    return {
        "hf_id": location.repo_id,
        "revision": location.revision,
        "commit": folder.name,
        "files": sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()),
    }


def prefetch_model(spec: dict[str, Any]) -> dict[str, Any]:
    """Fetch every hub repository of a model spec; the record the rule writes."""
    repositories = [snapshot(location) for location in hub_repositories(spec)]
    return {"model": spec.get("name"), "repositories": repositories}
