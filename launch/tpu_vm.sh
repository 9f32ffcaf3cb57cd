#!/usr/bin/env bash
# Cloud TPU VM, one process per host; run it on every host of the slice at once:
#   gcloud compute tpus tpu-vm ssh NAME --zone=ZONE --worker=all \
#     --command="cd lmjax && bash launch/tpu_vm.sh configs/mcl68.py /mnt/shared/runs/mcl68"
# JAX finds the slice's hosts itself (LMJAX_DISTRIBUTED=auto: `jax.distributed.initialize()`
# with no arguments). Process 0 writes the workdir, which must be a folder every host mounts
# (e.g. a bucket mounted with gcsfuse: `gs://` paths are not read directly yet).
set -euo pipefail
config="${1:?usage: bash launch/tpu_vm.sh CONFIG WORKDIR [overrides]}"
workdir="${2:?usage: bash launch/tpu_vm.sh CONFIG WORKDIR [overrides]}"
shift 2
export LMJAX_EXTRAS="${LMJAX_EXTRAS:-test,tpu}"
export LMJAX_DISTRIBUTED="${LMJAX_DISTRIBUTED:-auto}"
source "$(dirname "$0")/_venv.sh"
python -m lmjax.main --config="$config" --workdir="$workdir" "$@"
