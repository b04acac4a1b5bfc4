#!/usr/bin/env bash
# Start a private single-node SLURM cluster on this machine (munged, slurmctld, slurmd).
#
#   .ci/slurm/start.sh [STATE_DIR]        # default: $ANCHORFLOW_SLURM_DIR or a new temp dir
#   export SLURM_CONF=STATE_DIR/slurm.conf  # printed on the last line; sbatch/squeue need it
#   .ci/slurm/stop.sh STATE_DIR
#
# Installs Debian's slurm-wlm and munge when missing (needs root and a Debian package mirror).
# Everything lives in STATE_DIR: a fresh munge key and socket, slurm.conf (from slurm.conf.in),
# spool/state directories, logs and pidfiles. The one thing outside it is a symlink
# /etc/slurm/slurm.conf -> STATE_DIR/slurm.conf (removed by stop.sh): Snakemake's slurm-jobstep
# plugin strips SLURM_CONF from the environment of the `srun` it runs inside each job
# (snakemake-executor-plugin-slurm#164, #334), so that srun only finds the default path.
# An existing /etc/slurm/slurm.conf is never replaced: the script stops with an error instead.
# A munged already running on the machine is left alone (own socket, own free ports).
# If any step fails, the daemons started so far are stopped again before the script exits.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
state="${1:-${ANCHORFLOW_SLURM_DIR:-$(mktemp -d -t anchorflow-slurm.XXXXXX)}}"
cpus="${ANCHORFLOW_SLURM_CPUS:-2}"
memory_margin_mb="${ANCHORFLOW_SLURM_MEMORY_MARGIN_MB:-2048}"
wait_seconds="${ANCHORFLOW_SLURM_WAIT_SECONDS:-60}"

install_packages() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
        && command -v munged >/dev/null && command -v sbatch >/dev/null; then
        return
    fi
    echo "installing slurm-wlm and munge" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        slurm-wlm munge >/dev/null
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

on_failure() {
    echo "SLURM start failed; logs in $state/log; stopping what was started" >&2
    tail -n 20 "$state"/log/*.log >&2 2>/dev/null || true
    "$here/stop.sh" "$state" >&2 || true
}

install_packages
mkdir -p "$state"
state="$(cd "$state" && pwd)"
chmod 0755 "$state"
mkdir -p -m 0755 "$state/munge" "$state/run" "$state/log" "$state/spool" "$state/state"
trap on_failure ERR

# munge: a private key and socket for this cluster only.
dd if=/dev/urandom of="$state/munge/munge.key" bs=1024 count=1 status=none
chmod 0400 "$state/munge/munge.key"
munged --force \
    --socket="$state/munge/munge.socket" \
    --key-file="$state/munge/munge.key" \
    --pid-file="$state/run/munged.pid" \
    --log-file="$state/log/munged.log" \
    --seed-file="$state/munge/munged.seed"

node="$(hostname -s)"
memory_mb=$(( $(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo) - memory_margin_mb ))
sed -e "s|@STATE@|$state|g" \
    -e "s|@NODE@|$node|g" \
    -e "s|@CPUS@|$cpus|g" \
    -e "s|@MEMORY_MB@|$memory_mb|g" \
    -e "s|@CTLD_PORT@|$(free_port)|g" \
    -e "s|@SLURMD_PORT@|$(free_port)|g" \
    "$here/slurm.conf.in" >"$state/slurm.conf"
export SLURM_CONF="$state/slurm.conf"
default_conf=/etc/slurm/slurm.conf
if [[ -e "$default_conf" || -L "$default_conf" ]]; then
    echo "$default_conf exists; not replacing it (stop the cluster it belongs to first)" >&2
    false
fi
mkdir -p "$(dirname "$default_conf")"
ln -s "$SLURM_CONF" "$default_conf"
echo "$default_conf" >"$state/run/default-conf-link"

slurmctld -c
slurmd -N "$node"

for _ in $(seq "$wait_seconds"); do
    node_state="$(sinfo --noheader --nodes="$node" --format=%t 2>/dev/null || true)"
    if [[ "$node_state" == "idle" ]]; then
        trap - ERR
        echo "SLURM node $node is idle (state dir $state)" >&2
        echo "export SLURM_CONF=$SLURM_CONF"
        exit 0
    fi
    sleep 1
done
echo "node $node did not become idle within ${wait_seconds}s (state: '${node_state:-none}')" >&2
false
