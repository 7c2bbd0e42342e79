#!/bin/bash
exec "$(dirname "${BASH_SOURCE[0]}")/invoke_provider.sh" requestMachines "$@"
