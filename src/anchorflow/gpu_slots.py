"""One GPU per concurrently running model job on a multi-GPU workstation.

Snakemake's ``--resources gpu=N`` bounds how many GPU jobs run at once, but every job would see
every device and land on ``cuda:0``. Each GPU job therefore claims a free *slot* before CUDA is
initialised: an exclusive ``flock`` on ``slot-{i}.lock`` (one file per device) in a lock folder
shared by the machine's jobs, held until the process exits (the kernel releases it even on
SIGKILL), and exports ``CUDA_VISIBLE_DEVICES`` to that device. Where a scheduler already set
``CUDA_VISIBLE_DEVICES`` (SLURM), or the machine has at most one device, nothing is claimed.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import tempfile
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import IO

DEVICES_VARIABLE = "ANCHORFLOW_GPU_DEVICES"
LOCK_DIR_VARIABLE = "ANCHORFLOW_GPU_LOCK_DIR"
_held: list[IO[str]] = []


def device_count(environment: MutableMapping[str, str] = os.environ) -> int:
    """GPUs on this machine: ``$ANCHORFLOW_GPU_DEVICES`` when set (tests, or to use fewer),
    else the lines of ``nvidia-smi --list-gpus`` (0 when it is missing)."""
    if environment.get(DEVICES_VARIABLE):
        return int(environment[DEVICES_VARIABLE])
    try:
        listing = subprocess.run(
            ["nvidia-smi", "--list-gpus"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in listing.splitlines() if line.startswith("GPU "))


def lock_dir(environment: MutableMapping[str, str] = os.environ) -> Path:
    """The machine-wide folder of slot locks (``$ANCHORFLOW_GPU_LOCK_DIR`` overrides)."""
    return Path(
        environment.get(LOCK_DIR_VARIABLE) or Path(tempfile.gettempdir()) / "anchorflow-gpu-slots"
    )


def claim_slots(n_slots: int, n_devices: int, folder: Path, timeout_s: float = 3600.0) -> list[int]:
    """Lock ``n_slots`` free device slots of ``n_devices``; wait (polling) until enough are free.

    The locks stay held for the life of the process. Raises ``TimeoutError`` after ``timeout_s``.
    """
    if not 1 <= n_slots <= n_devices:
        raise ValueError(f"cannot claim {n_slots} of {n_devices} GPUs")
    folder.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    while True:
        claimed: list[tuple[int, IO[str]]] = []
        for slot in range(n_devices):
            stream = open(folder / f"slot-{slot}.lock", "a+")  # noqa: SIM115
            try:
                fcntl.flock(stream, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                stream.close()
                continue
            claimed.append((slot, stream))
            if len(claimed) == n_slots:
                _held.extend(stream for _, stream in claimed)
                return [slot for slot, _ in claimed]
        for _, stream in claimed:
            stream.close()
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {n_slots} free GPU slots of {n_devices} in {timeout_s} s")
        time.sleep(0.5)


def assign_gpus(
    requested: int, environment: MutableMapping[str, str] = os.environ, timeout_s: float = 3600.0
) -> str | None:
    """Give this job ``requested`` GPUs of its own: set ``CUDA_VISIBLE_DEVICES`` to claimed
    slots and return it; None (nothing changed) when no GPU is requested, the variable is
    already set, or the machine has fewer than two devices. Call before CUDA is initialised."""
    if requested < 1 or environment.get("CUDA_VISIBLE_DEVICES") is not None:
        return None
    devices = device_count(environment)
    if devices < 2:
        return None
    slots = claim_slots(min(requested, devices), devices, lock_dir(environment), timeout_s)
    environment["CUDA_VISIBLE_DEVICES"] = ",".join(str(slot) for slot in slots)
    return environment["CUDA_VISIBLE_DEVICES"]
