#!/usr/bin/env bash
# A GPU sprint on a machine lent for minutes (see launch/gpu_sprint.py), from a checkout that
# carries, in the ignored folder .dev/: 300w.tgz (the 300-W folder, e.g. recompressed losslessly
# with `jpegtran -optimize -progressive -copy none`) and site312.tar.xz (site312/: the packages
# the machine lacks, unpacked from their wheels; tfds without its dataset catalogue). The lent
# H200 (2026-12) had Python 3.12 with jax 0.11.2 (CUDA 13), flax, optax, orbax, opencv, but no
# tensorflow-datasets, array_record, ml-collections, importlib_resources (nor their small deps
# dm-tree, immutabledict, promise, simple-parsing, tensorflow-metadata, termcolor, toml,
# docstring-parser). site312/ was made with `pip download --no-deps --only-binary=:all:
# --python-version 3.12 --platform manylinux2014_x86_64 ...` of those, each wheel unzipped
# into site312/, then tensorflow_datasets/ cut to core/, proto/, rlds/ (without its datasets/),
# scripts/, testing/, an empty url_checksums/ and the top-level modules: 3.6 MB xz-compressed,
# so that the repository, the data and the packages fit the device tool's 64 MiB. Run:
#   bash launch/gpu_sprint.sh              # OUT=folder for the packed workdirs
#   SPRINT_JOBS=bbfcn68_adamw SPRINT_BUDGET_S=330 bash launch/gpu_sprint.sh
set -u
cd "$(dirname "$0")/.."
export OUT="${OUT:-/tmp/sprint_out}"; mkdir -p "$OUT"
PY="${SPRINT_PYTHON:-python3}"
mkdir -p /tmp/sprint_data && tar xzf .dev/300w.tgz -C /tmp/sprint_data
tar xJf .dev/site312.tar.xz -C /tmp
export PYTHONPATH=/tmp/site312:$PWD PYTHONUNBUFFERED=1 LMJAX_DATA_DIR=/tmp/sprint_tfds
export SPRINT_MANUAL_DIR=/tmp/sprint_data/300w
(nvidia-smi -L; nproc) 2>&1 | head -3
"$PY" - <<'PY'
import importlib
for m in ('jax', 'jaxlib', 'flax', 'optax', 'orbax.checkpoint', 'tensorflow_datasets', 'ml_collections', 'cv2', 'numpy'):
  try:
    mod = importlib.import_module(m); print(m, getattr(mod, '__version__', '?'))
  except Exception as e:
    print(m, 'IMPORT FAILED', e)
import jax; print(jax.devices())
from lmjax.data import datasets
print('300w train:', len(datasets.load('300w', 'train', manual_dir='/tmp/sprint_data/300w')))
PY
"$PY" launch/gpu_sprint.py 2>&1 | tee "$OUT/driver.log"
