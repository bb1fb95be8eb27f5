#!/usr/bin/env bash
# `make stop`: stop a stack that `make run` started from another shell. run.sh writes
# $HWR_VAR_DIR/run.state (its pid and the stack id); TERM makes run.sh stop honcho and
# sweep; if run.sh itself is gone or stuck, the stack id finds what is left.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/stack-lib.sh"
state_file="$HWR_VAR_DIR/run.state"
if [ ! -f "$state_file" ]; then
  echo "stop.sh: no stack is running from $HWR_VAR_DIR"
  exit 0
fi
pid="$(sed -n 's/^pid=//p' "$state_file")"
stack_id="$(sed -n 's/^stack_id=//p' "$state_file")"
redis_port="$(sed -n 's/^redis_port=//p' "$state_file")"
# The pid is only run.sh's while its command line says so (pids get reused).
is_run_sh() { [ -n "$pid" ] && { tr '\0' ' ' < "/proc/$pid/cmdline"; } 2>/dev/null | grep -q 'scripts/run.sh'; }
if is_run_sh; then
  kill -TERM "$pid"
  # honcho gives its processes 5 s, then run.sh sweeps for up to 10 s more.
  for _ in $(seq 300); do
    is_run_sh || break
    sleep 0.1
  done
fi
[ -n "$stack_id" ] && sweep_stack "$stack_id" "$redis_port"
is_run_sh && kill -KILL "$pid" 2>/dev/null
rm -f "$state_file"
echo "stop.sh: stopped"
