#!/usr/bin/env bash
# Cloud TPU VM (run on every host of the slice, e.g. with `gcloud compute tpus tpu-vm ssh
# --worker=all --command="bash lmjax/launch/tpu_vm.sh configs/mcl68.py gs://bucket/runs/mcl68"`).
# JAX discovers the slice itself; lmjax.main calls jax.distributed.initialize() when
# JAX_NUM_PROCESSES > 1 is set.
set -euo pipefail
config="${1:?usage: bash launch/tpu_vm.sh CONFIG WORKDIR [overrides]}"
workdir="${2:?usage: bash launch/tpu_vm.sh CONFIG WORKDIR [overrides]}"
shift 2
export LMJAX_EXTRAS="${LMJAX_EXTRAS:-test,tpu}"
source "$(dirname "$0")/_venv.sh"
python -m lmjax.main --config="$config" --workdir="$workdir" "$@"
