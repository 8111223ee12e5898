#!/usr/bin/env bash
# Installs the Debian packages the tests and benchmarks use, when they are missing:
# redis-server (real Redis in tests), chromium (the browser test), nginx-light and wrk (bench).
set -euo pipefail

needed=()
command -v redis-server >/dev/null || needed+=(redis-server)
command -v chromium >/dev/null || needed+=(chromium)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || needed+=(nginx-light)
command -v wrk >/dev/null || needed+=(wrk)
for extra in ${SDA_EXTRA_PACKAGES:-}; do  # e.g. stress-ng for make test-soak
  command -v "$extra" >/dev/null || needed+=("$extra")
done
[ ${#needed[@]} -eq 0 ] && exit 0

echo "installing system packages: ${needed[*]}" >&2
if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null; then
  sudo=(sudo)
else
  echo "error: please install these Debian packages: ${needed[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${needed[@]}" >/dev/null
