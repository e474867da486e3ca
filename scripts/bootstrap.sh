#!/usr/bin/env bash
# Create or refresh recstream's virtual environment, then print its path.
#
# The venv lives outside the clone (default ~/.cache/recstream/venv) so CI runs and
# fresh clones on the same machine reuse it; it is rebuilt only when
# requirements.lock or the extras change. Installs with uv (from PyPI) for speed.
#   RECSTREAM_VENV    where the venv lives
#   RECSTREAM_EXTRAS  extras to install (default: train,dev)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${RECSTREAM_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/recstream/venv}"
extras="${RECSTREAM_EXTRAS:-train,dev}"
say() { echo "bootstrap: $*" >&2; }

python="${PYTHON:-python3}"
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  say "Python 3.11+ is required (found: $("$python" --version 2>&1)). Set PYTHON=/path/to/python3.11."
  exit 1
fi
for tool in java mvn; do
  command -v "$tool" >/dev/null || { say "'$tool' not found: install Java 17+ and Maven (apt-get install openjdk-17-jre-headless maven)."; exit 1; }
done

if [ ! -x "$venv/bin/python" ]; then
  say "creating virtual environment $venv"
  "$python" -m venv "$venv"
fi
if [ ! -x "$venv/bin/uv" ]; then
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "uv>=0.5"
fi

stamp="$venv/.recstream-stamp"
want="$(cat "$here/requirements.lock" "$here/pyproject.toml" | sha256sum | cut -c1-16)-$extras"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "installing dependencies (extras: $extras) into $venv; the first time downloads a few GB (torch)"
  lock_args=()
  [[ ",$extras," == *",train,"* && ",$extras," == *",dev,"* ]] && lock_args=(-r "$here/requirements.lock")
  VIRTUAL_ENV="$venv" "$venv/bin/uv" pip install -q "${lock_args[@]}" -e "$here[$extras]"
  echo "$want" > "$stamp"
else
  # Same dependencies: only point the editable install at this clone (fast, no network).
  VIRTUAL_ENV="$venv" "$venv/bin/uv" pip install -q --no-deps -e "$here"
fi
echo "$venv"
