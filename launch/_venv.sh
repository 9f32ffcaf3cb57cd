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
want="$(cat "$repo/setup.cfg" "$repo/pyproject.toml" | sha1sum | cut -d' ' -f1) $extras"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[lmjax] installing lmjax[$extras] into $venv"
  "$venv/bin/python" -m pip install -q -e "$repo[$extras]"
  echo "$want" > "$stamp"
fi
export PATH="$venv/bin:$PATH"
cd "$repo"
