#!/usr/bin/env bash
# `make run`: the whole stack on this machine without Docker, under honcho (Procfile):
# redis-server (unless HWR_REDIS_URL points at one), TorchServe with the committed .mar
# and token auth on, a Celery worker and the web app. Ctrl-C or `make stop` stops all of
# it. Every process it starts carries HWR_STACK_ID in its environment, so the stop can
# find (and finish off) anything that outlived honcho.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
[ -x "$root/.venv/bin/python" ] && export PATH="$root/.venv/bin:$PATH"
source "$root/scripts/stack-lib.sh"

mkdir -p "$HWR_VAR_DIR"
export HWR_VAR_DIR="$(cd "$HWR_VAR_DIR" && pwd)"
state_file="$HWR_VAR_DIR/run.state"
if [ -f "$state_file" ]; then
  old_pid="$(sed -n 's/^pid=//p' "$state_file")"
  if [ -n "$old_pid" ] && kill -0 "$old_pid" 2>/dev/null; then
    echo "run.sh: the stack is already running (pid $old_pid, $HWR_VAR_DIR); stop it with: make stop" >&2
    exit 1
  fi
  rm -f "$state_file"  # left by a run that was killed outright
fi

export HWR_WEB_BIND="${HWR_WEB_BIND:-127.0.0.1}" HWR_WEB_PORT="${HWR_WEB_PORT:-8000}"
export HWR_REDIS_PORT="${HWR_REDIS_PORT:-6380}"  # not 6379: leave a system Redis alone
export HWR_WORKER_METRICS_PORT="${HWR_WORKER_METRICS_PORT:-9808}"
export HWR_WORKER_PROCESSES="${HWR_WORKER_PROCESSES:-auto}"  # one Celery worker process per core
export HWR_TS_INFERENCE_PORT="${HWR_TS_INFERENCE_PORT:-8080}" HWR_TS_MANAGEMENT_PORT="${HWR_TS_MANAGEMENT_PORT:-8081}"
export HWR_TS_METRICS_PORT="${HWR_TS_METRICS_PORT:-8082}" HWR_TS_GRPC_INFERENCE_PORT="${HWR_TS_GRPC_INFERENCE_PORT:-7070}"
export HWR_TS_GRPC_MANAGEMENT_PORT="${HWR_TS_GRPC_MANAGEMENT_PORT:-7071}"

processes=(torchserve worker web)
ports=(HWR_WEB_PORT HWR_WORKER_METRICS_PORT HWR_TS_INFERENCE_PORT HWR_TS_MANAGEMENT_PORT HWR_TS_METRICS_PORT
       HWR_TS_GRPC_INFERENCE_PORT HWR_TS_GRPC_MANAGEMENT_PORT)
if [ -z "${HWR_REDIS_URL:-}" ]; then
  processes=(redis "${processes[@]}")
  ports=(HWR_REDIS_PORT "${ports[@]}")
  export HWR_REDIS_URL="redis://127.0.0.1:$HWR_REDIS_PORT/0"
  mkdir -p "$HWR_VAR_DIR/redis"
fi

# Everything is checked before anything starts: a half-started stack is worse than none.
problems=()
declare -A seen=()
for name in "${ports[@]}"; do
  port="${!name}"
  if [ -n "${seen[$port]:-}" ]; then
    problems+=("$name and ${seen[$port]} are both $port")
  elif port_taken "$port"; then
    problems+=("port $port ($name) is already in use")
  fi
  seen[$port]="$name"
done
if [[ " ${processes[*]} " == *" redis "* ]] && ! command -v redis-server >/dev/null; then
  problems+=("redis-server is not installed (make system-deps), or set HWR_REDIS_URL")
fi
command -v java >/dev/null || problems+=("java is not installed (make system-deps)")
command -v torchserve >/dev/null || problems+=("torchserve is not installed (make venv)")
store="${HWR_TS_MODEL_STORE:-$root/serve/model-store}"
[ -f "$store/emnist.mar" ] || problems+=("no model archive at $store/emnist.mar (make train)")
if [ ${#problems[@]} -gt 0 ]; then
  printf 'run.sh: %s\n' "${problems[@]}" >&2
  echo "run.sh: nothing was started; set HWR_WEB_PORT, HWR_REDIS_PORT (or HWR_REDIS_URL), HWR_WORKER_METRICS_PORT, HWR_TS_*_PORT to free ports" >&2
  exit 1
fi

export HWR_TS_STATE_DIR="${HWR_TS_STATE_DIR:-$HWR_VAR_DIR/torchserve}"
mkdir -p "$HWR_TS_STATE_DIR"
# TorchServe writes fresh tokens on every start; a stale key file would hand the worker
# and web app a token that no longer works until the new one lands.
rm -f "$HWR_TS_STATE_DIR/key_file.json"
export HWR_TORCHSERVE_URLS="http://127.0.0.1:$HWR_TS_INFERENCE_PORT"
case "${HWR_TS_DISABLE_TOKEN_AUTH:-false}" in
  1|true|yes) unset HWR_TORCHSERVE_KEY_FILE ;;
  *) export HWR_TORCHSERVE_KEY_FILE="$HWR_TS_STATE_DIR/key_file.json" ;;
esac
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
HWR_STACK_ID="$(cat /proc/sys/kernel/random/uuid)"
export HWR_STACK_ID

url="http://$HWR_WEB_BIND:$HWR_WEB_PORT"
[ "$HWR_WEB_BIND" = 0.0.0.0 ] && url="http://127.0.0.1:$HWR_WEB_PORT"
echo "hwr: starting ${processes[*]} (state in $HWR_VAR_DIR)"
echo "hwr: web app and API at $url"
if [ -n "${HWR_API_KEYS:-}" ]; then
  echo "hwr: API keys are on; API key: $(first_api_key "$HWR_API_KEYS")"
  echo "hwr: send it as: -H 'Authorization: Bearer $(first_api_key "$HWR_API_KEYS")'"
else
  echo "hwr: API keys are off (set HWR_API_KEYS to turn them on)"
fi

stopping=false
on_signal() { stopping=true; [ -n "${honcho_pid:-}" ] && kill -TERM "$honcho_pid" 2>/dev/null; return 0; }
trap on_signal INT TERM HUP
# honcho reads .env by default; the compose .env is not for this stack: /dev/null.
honcho start -f "$root/Procfile" -d "$root" -e /dev/null "${processes[@]}" &
honcho_pid=$!
redis_port=""
[[ " ${processes[*]} " == *" redis "* ]] && redis_port="$HWR_REDIS_PORT"
printf 'pid=%s\nstack_id=%s\nhoncho_pid=%s\nredis_port=%s\n' "$$" "$HWR_STACK_ID" "$honcho_pid" "$redis_port" > "$state_file"
announce_ready "$url" "$honcho_pid" &
ready_pid=$!

rc=0
while :; do
  wait "$honcho_pid" && rc=0 || rc=$?
  kill -0 "$honcho_pid" 2>/dev/null || break
done
kill "$ready_pid" 2>/dev/null || true
sweep_stack "$HWR_STACK_ID" "$redis_port"
rm -f "$state_file"
# 130/143: honcho itself got INT/TERM (a Ctrl-C reaches it directly, even where this
# shell started with SIGINT ignored and so could not trap it).
if $stopping || [ "$rc" = 130 ] || [ "$rc" = 143 ]; then
  echo "hwr: stopped"
  exit 0
fi
echo "hwr: a process exited (honcho rc=$rc); the stack was stopped" >&2
exit "$((rc == 0 ? 1 : rc))"
