#!/bin/sh
# ctest "python": runs run_ctest.py with the interpreter a user would expect when the
# tests run, not only the one CMake found when it first configured: the active virtual
# (or conda) environment's, else python3 on PATH, else the configured one ($1).
configured=$1
shift
if [ -n "$VIRTUAL_ENV" ] && [ -x "$VIRTUAL_ENV/bin/python" ]; then
  py="$VIRTUAL_ENV/bin/python"
elif [ -n "$CONDA_PREFIX" ] && [ -x "$CONDA_PREFIX/bin/python" ]; then
  py="$CONDA_PREFIX/bin/python"
elif command -v python3 >/dev/null 2>&1; then
  py=$(command -v python3)
else
  py=$configured
fi
echo "python: the suite runs on $py"
exec "$py" "$@"
