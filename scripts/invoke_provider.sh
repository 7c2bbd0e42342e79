#!/bin/bash
# Shared by the five verb scripts. Finds the interpreter ($HOSTFACTORY_AWS_PYTHON, then the
# plugin's .venv, then python3 on PATH) and runs the one entrypoint. Paths come from this
# script's own location, never from the current directory.
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
root="$(dirname "$here")"
if [ -n "${HOSTFACTORY_AWS_PYTHON:-}" ]; then
    py="$HOSTFACTORY_AWS_PYTHON"
elif [ -x "$root/.venv/bin/python" ]; then
    py="$root/.venv/bin/python"
else
    py="python3"
fi
exec "$py" "$root/hostfactory_aws/invoke_provider.py" "$@"
