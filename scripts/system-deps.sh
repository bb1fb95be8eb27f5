#!/usr/bin/env bash
# Check the system packages the stack needs; install them with apt when root, otherwise
# print the exact command. Java 17 runs TorchServe's frontend, redis-server is the broker
# and result store, Chromium runs the browser test.
set -euo pipefail
missing=()
java_ok=false
if command -v java >/dev/null && java -version 2>&1 | grep -Eq 'version "(17|1[89]|2[0-9])'; then java_ok=true; fi
$java_ok || missing+=(openjdk-17-jre-headless)
command -v redis-server >/dev/null || missing+=(redis-server)
if [ "${HWR_SKIP_BROWSER:-0}" != 1 ]; then
  command -v chromium >/dev/null || missing+=(chromium)
  command -v chromedriver >/dev/null || missing+=(chromium-driver)
fi
[ ${#missing[@]} -eq 0 ] && exit 0
cmd="apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && $cmd >/dev/null
else
  echo "missing system packages: ${missing[*]}" >&2
  echo "install them with: sudo $cmd" >&2
  echo "(TorchServe needs Java 17: openjdk-17-jre-headless)" >&2
  exit 1
fi
