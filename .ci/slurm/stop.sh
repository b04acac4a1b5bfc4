#!/usr/bin/env bash
# Stop the cluster that .ci/slurm/start.sh started in STATE_DIR: cancel its jobs, stop slurmd,
# slurmctld and munged by their pidfiles (only processes whose name matches the daemon), and
# remove the /etc/slurm/slurm.conf link it made. Safe to call twice, after a partial start, or
# when nothing is running.
#
#   .ci/slurm/stop.sh STATE_DIR [--remove]    # --remove also deletes STATE_DIR
set -uo pipefail

state="${1:?usage: stop.sh STATE_DIR [--remove]}"
remove="${2:-}"

stop_daemon() {
    local name="$1" pidfile="$2" pid
    [[ -s "$pidfile" ]] || return 0
    pid="$(tr -dc '0-9' <"$pidfile")"
    if [[ -z "$pid" || "$(cat "/proc/$pid/comm" 2>/dev/null)" != "$name" ]]; then
        rm -f "$pidfile"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 50); do
        [[ -d "/proc/$pid" ]] || break
        sleep 0.2
    done
    if [[ -d "/proc/$pid" ]]; then
        echo "$name ($pid) ignored SIGTERM; sending SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null
    fi
    rm -f "$pidfile"
}

if [[ -f "$state/slurm.conf" && -s "$state/run/slurmctld.pid" ]]; then
    export SLURM_CONF="$state/slurm.conf"
    jobs="$(timeout 10 squeue --noheader --format=%i 2>/dev/null)"
    if [[ -n "$jobs" ]]; then
        # shellcheck disable=SC2086  # one job id per word
        timeout 10 scancel $jobs 2>/dev/null
        sleep 2
    fi
fi

stop_daemon slurmd "$state/run/slurmd.pid"
stop_daemon slurmctld "$state/run/slurmctld.pid"
stop_daemon munged "$state/run/munged.pid"

# The /etc/slurm/slurm.conf link start.sh made, if it still points into this state directory.
if [[ -s "$state/run/default-conf-link" ]]; then
    link="$(cat "$state/run/default-conf-link")"
    if [[ -L "$link" && "$(readlink "$link")" == "$state/slurm.conf" ]]; then
        rm -f "$link"
    fi
    rm -f "$state/run/default-conf-link"
fi

if [[ "$remove" == "--remove" ]]; then
    rm -rf "$state"
fi
exit 0
