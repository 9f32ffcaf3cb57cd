#!/usr/bin/env bash
# N training processes on this machine, one JAX system (CPU collectives through gloo):
#   bash launch/local_multiprocess.sh N CONFIG WORKDIR [--config.x=y ...]
# Each process gets LMJAX_DEVICES_PER_PROCESS CPU devices (default 1). Process 0 writes the
# workdir's files and logs to WORKDIR/train.INFO, process i to WORKDIR/train.process<i>.INFO;
# their stdout / stderr go to WORKDIR/process<i>.log. Exits with the first non-zero status (the
# other processes are stopped then). SIGTERM / SIGINT are passed on to every process: the run
# saves a checkpoint at the next step and exits 0; running the same command again resumes.
set -euo pipefail
usage="usage: bash launch/local_multiprocess.sh N CONFIG WORKDIR [overrides]"
count="${1:?$usage}"
config="${2:?$usage}"
workdir="${3:?$usage}"
shift 3
[[ "$count" =~ ^[1-9][0-9]*$ ]] || { echo "error: N: expected a positive integer, got '$count'" >&2; exit 2; }
python="${PYTHON:-python}"
port="$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
devices="${LMJAX_DEVICES_PER_PROCESS:-1}"
mkdir -p "$workdir"
pids=()
for ((i = 0; i < count; i++)); do
  JAX_PLATFORMS=cpu JAX_COORDINATOR_ADDRESS="127.0.0.1:$port" JAX_NUM_PROCESSES="$count" \
    JAX_PROCESS_ID="$i" "$python" -m lmjax.main --config="$config" --workdir="$workdir" \
    --config.cpu_devices="$devices" "$@" >"$workdir/process$i.log" 2>&1 &
  pids+=("$!")
done
forwarded=0
trap 'forwarded=1; kill -TERM "${pids[@]}" 2>/dev/null || true' INT TERM
status=0
for i in "${!pids[@]}"; do
  code=0
  wait "${pids[$i]}" || code=$?
  while [[ $forwarded -eq 1 && $code -gt 128 ]] && kill -0 "${pids[$i]}" 2>/dev/null; do
    code=0  # the wait was interrupted by the signal: wait for the process's own exit
    wait "${pids[$i]}" || code=$?
  done
  if [[ $code -ne 0 ]]; then
    echo "process $i exited with status $code (see $workdir/process$i.log)" >&2
    [[ $status -eq 0 ]] && status=$code
    kill "${pids[@]}" 2>/dev/null || true
  fi
done
exit "$status"
