# Sourced by the launch scripts: create or reuse a virtualenv and install lmjax into it.
#   LMJAX_VENV   virtualenv folder (default: .venv in the repository)
#   LMJAX_EXTRAS pip extras to install (default: test; e.g. "test,cuda12" on a GPU machine)
#   LMJAX_NO_VENV=1  use the python on PATH as it is (a prepared environment)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ "${LMJAX_NO_VENV:-0}" = 1 ]; then
  cd "$repo"
  return 0
fi
venv="${LMJAX_VENV:-$repo/.venv}"
python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  echo "[lmjax] creating virtualenv $venv"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
fi
stamp="$venv/.lmjax-installed"
extras="${LMJAX_EXTRAS:-test}"
# Reinstall only when the package metadata or the extras changed.
want="$(cat "$repo/setup.cfg" "$repo/pyproject.toml" "${BASH_SOURCE[0]}" | sha1sum | cut -d' ' -f1) $extras"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[lmjax] installing lmjax[$extras] into $venv"
  "$venv/bin/python" -m pip install -q -e "$repo[$extras]"
  if [[ ",$extras," == *,test,* ]]; then
    # The whole-predictor ONNX export's converter, for its parity tests. Not the `onnx` extra:
    # jax2onnx 0.17 pins orbax-checkpoint<0.11.37, so it goes in without its dependencies
    # (what it imports is here; setup.cfg, extra `onnx`).
    "$venv/bin/python" -m pip install -q --no-deps jax2onnx==0.17.1 onnx-ir==1.1.0 sympy 'mpmath<1.4'
  fi
  echo "$want" > "$stamp"
fi
export PATH="$venv/bin:$PATH"
cd "$repo"
