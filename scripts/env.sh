# Sourced by scripts/*.sh: create (once) and activate the project's virtual environment in .venv,
# installing the CPU build of torch first so that nothing ever pulls a multi-GB CUDA build, then
# gaaf with its `torch` extra (always: this is the PyTorch environment) and $EXTRAS.
# Re-installs only when pyproject.toml changes.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${GAAF_VENV:-$ROOT/.venv}"
TORCH_SPEC="${GAAF_TORCH_SPEC:-torch==2.13.0}"
EXTRAS="${GAAF_EXTRAS:-dev,keras,ray,export}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "[gaaf] creating virtual environment $VENV" >&2
  python3 -m venv "$VENV"
fi
stamp="$VENV/.gaaf-installed"
want="$(cat "$ROOT/pyproject.toml" | sha256sum | cut -c1-16) $TORCH_SPEC $EXTRAS"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[gaaf] installing $TORCH_SPEC and gaaf[torch,$EXTRAS] into $VENV" >&2
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$TORCH_SPEC" 2>&1 | grep -v "^WARNING: Location" >&2 || true
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$TORCH_SPEC" -e "$ROOT[torch,$EXTRAS]" 2>&1 | grep -v "^WARNING: Location" >&2 || true
  "$VENV/bin/python" -c "import torch, gaaf" || { echo "[gaaf] installation failed" >&2; exit 1; }
  echo "$want" > "$stamp"
fi
export PATH="$VENV/bin:$PATH"
export MPLBACKEND=Agg
