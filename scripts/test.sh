#!/usr/bin/env bash
# Run the whole test suite in the project's own environment (created on first use), then the tests
# that need no PyTorch again on Keras's JAX backend in a second environment without torch
# (.venv-keras-jax, scripts/env-keras-jax.sh): what a Keras user without PyTorch runs.
#   bash scripts/test.sh                 # everything, both environments
#   bash scripts/test.sh -k keras        # extra arguments go to pytest, main environment only
#   bash scripts/test.sh --keras-jax     # only the Keras-on-JAX part (extra arguments go to its pytest)
source "$(dirname "$0")/env.sh"
cd "$ROOT"
# the files that need no torch: the Keras layer on any backend, the example, the no-torch messages
KERAS_JAX_TESTS=(tests/test_keras_backends.py tests/test_keras_example.py tests/test_no_torch.py)
keras_jax() {
  source "$ROOT/scripts/env-keras-jax.sh"
  echo "[gaaf] Keras on JAX without PyTorch: ${KERAS_JAX_TESTS[*]} in $KERAS_JAX_VENV" >&2
  KERAS_BACKEND=jax "$KERAS_JAX_PYTHON" -m pytest "${KERAS_JAX_TESTS[@]}" "$@"
}
if [ "${1:-}" = "--keras-jax" ]; then
  shift
  keras_jax "$@"
  exit
fi
export KERAS_BACKEND=torch
status=0
python -m pytest "$@" || status=$?
if [ $# -eq 0 ]; then
  keras_jax || status=$?
fi
exit $status
