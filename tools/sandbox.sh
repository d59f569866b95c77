#!/usr/bin/env bash
# Set the machine up (tools/bootstrap.sh), then start the nova-openvz
# sandbox: "nova-openvz sandbox" with this script's arguments.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${NOVA_OPENVZ_VENV:-$ROOT/.venv}

"$ROOT/tools/bootstrap.sh"
exec "$VENV/bin/nova-openvz" sandbox "$@"
