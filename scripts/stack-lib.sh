# Shared by scripts/run.sh and scripts/stop.sh (sourced, not run).
export HWR_VAR_DIR="${HWR_VAR_DIR:-$root/var}"

# True when something accepts connections on 127.0.0.1:$1 (a bind to 0.0.0.0 counts).
port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# HWR_API_KEYS is a comma list of keys (web/config.py); clients send one as a Bearer token.
first_api_key() { local first="${1%%,*}"; echo "${first// /}"; }

# Pids whose environment holds HWR_STACK_ID=$1: every process the stack started, however
# deep (TorchServe's JVM and its Python backends, gunicorn and Celery children).
stack_pids() {
  local env pid
  for env in /proc/[0-9]*/environ; do
    pid="${env#/proc/}"; pid="${pid%/environ}"
    [ "$pid" = "$$" ] || [ "$pid" = "$BASHPID" ] && continue
    grep -qzx "HWR_STACK_ID=$1" "$env" 2>/dev/null && echo "$pid"
  done
  return 0
}

# Redis rewrites its process title over its environment, so it is found by the title
# ("redis-server 127.0.0.1:PORT"), which only our instance can have while it holds the port.
stack_and_redis_pids() {
  stack_pids "$1"
  [ -n "${2:-}" ] && pgrep -fx "redis-server 127\.0\.0\.1:$2" || true
}

# TERM whatever of the stack ($1: stack id, $2: redis port if it ran one) is still
# alive, then KILL what ignores it.
sweep_stack() {
  local pids i
  pids="$(stack_and_redis_pids "$1" "${2:-}")"
  [ -z "$pids" ] && return 0
  echo "hwr: stopping leftover processes: $(echo $pids)" >&2
  kill -TERM $pids 2>/dev/null || true
  for i in $(seq 50); do
    pids="$(stack_and_redis_pids "$1" "${2:-}")"
    [ -z "$pids" ] && return 0
    sleep 0.2
  done
  kill -KILL $pids 2>/dev/null || true
}

# Print one line once GET $1/readyz answers 200; give up when honcho ($2) is gone.
announce_ready() {
  local deadline=$((SECONDS + ${HWR_READY_TIMEOUT:-600}))
  while kill -0 "$2" 2>/dev/null && [ $SECONDS -lt $deadline ]; do
    if python - "$1/readyz" <<'PY' 2>/dev/null
import sys, urllib.request
sys.exit(0 if urllib.request.urlopen(sys.argv[1], timeout=2).status == 200 else 1)
PY
    then
      echo "hwr: ready at $1"
      return 0
    fi
    sleep 1
  done
  kill -0 "$2" 2>/dev/null && echo "hwr: $1/readyz is still not ready; see the log above" >&2
  return 0
}
