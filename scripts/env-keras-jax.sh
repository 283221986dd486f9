# Sourced by scripts/test.sh after env.sh: create (once) a second virtual environment, .venv-keras-jax,
# that is a Keras user's without PyTorch: gaaf[keras], the CPU build of jax, pytest, and no torch.
# gaaf[keras] must not pull torch (it is the `torch` extra): the check below fails the set-up if it
# did. Re-installs only when pyproject.toml changes. Sets KERAS_JAX_PYTHON to its interpreter.
KERAS_JAX_VENV="${GAAF_KERAS_JAX_VENV:-$ROOT/.venv-keras-jax}"
JAX_SPEC="${GAAF_JAX_SPEC:-jax[cpu]}"  # jax + jaxlib CPU wheels (no CUDA pulled)
if [ ! -x "$KERAS_JAX_VENV/bin/python" ]; then
  echo "[gaaf] creating virtual environment $KERAS_JAX_VENV" >&2
  python3 -m venv "$KERAS_JAX_VENV"
fi
KERAS_JAX_PYTHON="$KERAS_JAX_VENV/bin/python"
stamp="$KERAS_JAX_VENV/.gaaf-installed"
want="$(sha256sum < "$ROOT/pyproject.toml" | cut -c1-16) $JAX_SPEC"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[gaaf] installing $JAX_SPEC, pytest and gaaf[keras] (no torch) into $KERAS_JAX_VENV" >&2
  "$KERAS_JAX_PYTHON" -m pip install -q --disable-pip-version-check "$JAX_SPEC" "pytest>=7.4" -e "$ROOT[keras]" 2>&1 \
    | grep -v "^WARNING: Location" >&2 || true
  KERAS_BACKEND=jax "$KERAS_JAX_PYTHON" -c "import jax, keras, gaaf.keras" \
    || { echo "[gaaf] installation of $KERAS_JAX_VENV failed" >&2; exit 1; }
  if "$KERAS_JAX_PYTHON" -c "import torch" 2>/dev/null; then
    echo "[gaaf] torch is installed in $KERAS_JAX_VENV: gaaf[keras] must not pull it" >&2
    exit 1
  fi
  echo "$want" > "$stamp"
fi
