#!/usr/bin/env bash
# Run TorchServe in the foreground (for honcho and containers) and stop it cleanly on
# INT/TERM. TorchServe's own wrapper leaves the JVM running when it is killed, and
# `torchserve --stop` finds the JVM through a pid file under $TEMP, so start and stop
# must share TEMP: both happen here.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
state="${HWR_TS_STATE_DIR:-$here/../var/torchserve}"
store="$(cd "${HWR_TS_MODEL_STORE:-$here/model-store}" && pwd)"
mkdir -p "$state/tmp" "$state/logs"
state="$(cd "$state" && pwd)"
export TEMP="$state/tmp" LOG_LOCATION="$state/logs" METRICS_LOCATION="$state/logs"
# One torch thread per backend worker: with the default, workers fight over the cores.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
bind="${HWR_TS_BIND:-127.0.0.1}"
mgmt_bind="${HWR_TS_MANAGEMENT_BIND:-127.0.0.1}"
export TS_INFERENCE_ADDRESS="http://$bind:${HWR_TS_INFERENCE_PORT:-8080}"
export TS_MANAGEMENT_ADDRESS="http://$mgmt_bind:${HWR_TS_MANAGEMENT_PORT:-8081}"
export TS_METRICS_ADDRESS="http://$mgmt_bind:${HWR_TS_METRICS_PORT:-8082}"
export TS_GRPC_INFERENCE_PORT="${HWR_TS_GRPC_INFERENCE_PORT:-7070}"
export TS_GRPC_MANAGEMENT_PORT="${HWR_TS_GRPC_MANAGEMENT_PORT:-7071}"
export TS_GRPC_INFERENCE_ADDRESS="$bind" TS_GRPC_MANAGEMENT_ADDRESS="$mgmt_bind"
export TS_ALLOWED_URLS="file://$store/.*"
if [ -n "${HWR_TS_WORKERS:-}" ]; then export TS_DEFAULT_WORKERS_PER_MODEL="$HWR_TS_WORKERS"; fi
auth=()
case "${HWR_TS_DISABLE_TOKEN_AUTH:-false}" in
  1|true|yes) auth=(--disable-token-auth) ;;
esac
# The model API (register/unregister, set-default) is off by default in TorchServe; turn it
# on for zero-downtime upgrades. It is only on the management address, never public.
case "${HWR_TS_ENABLE_MODEL_API:-false}" in
  1|true|yes) auth+=(--enable-model-api) ;;
esac
for port in "${HWR_TS_INFERENCE_PORT:-8080}" "${HWR_TS_MANAGEMENT_PORT:-8081}" "${HWR_TS_METRICS_PORT:-8082}"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "serve/start.sh: port $port is already in use; set HWR_TS_*_PORT to free ports" >&2
    exit 1
  fi
done
# key_file.json (the inference and management tokens) is written to the JVM's working dir.
cd "$state"
torchserve --start --foreground --ncs --model-store "$store" --ts-config "$here/config.properties" \
  --log-config "$here/log4j2.xml" --models "${HWR_TS_MODELS:-emnist=emnist.mar}" "${auth[@]}" &
pid=$!
stop() { torchserve --stop --foreground >/dev/null 2>&1 || true; wait "$pid" 2>/dev/null || true; exit 0; }
trap stop INT TERM
wait "$pid"
