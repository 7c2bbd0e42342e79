#!/bin/bash
# Shared by the five verb scripts. Finds the interpreter ($HOSTFACTORY_AWS_PYTHON, then the
# plugin's .venv, then python3 on PATH) and runs the one entrypoint. Paths come from this
# script's own location, never from the current directory; the plugin dir is exported as
# HOSTFACTORY_AWS_HOME so the plugin's default conf/, work/ and log/ are the ones beside
# these scripts even when the package itself is installed elsewhere (site-packages).
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
root="$(dirname "$here")"
export HOSTFACTORY_AWS_HOME="$root"
if [ -n "${HOSTFACTORY_AWS_PYTHON:-}" ]; then
    py="$HOSTFACTORY_AWS_PYTHON"
elif [ -x "$root/.venv/bin/python" ]; then
    py="$root/.venv/bin/python"
else
    py="python3"
fi
if [ -f "$root/hostfactory_aws/invoke_provider.py" ]; then
    exec "$py" "$root/hostfactory_aws/invoke_provider.py" "$@"
fi
# Scripts copied into HostFactory's tree without the source: the installed package.
exec "$py" -m hostfactory_aws.invoke_provider "$@"
