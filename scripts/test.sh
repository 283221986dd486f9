#!/usr/bin/env bash
# Run the whole test suite in the project's own environment (created on first use).
#   bash scripts/test.sh            # everything
#   bash scripts/test.sh -k keras   # extra arguments go to pytest
source "$(dirname "$0")/env.sh"
cd "$ROOT"
export KERAS_BACKEND=torch
exec python -m pytest "$@"
