#!/usr/bin/env bash
# Installs the Debian packages the tests and benchmarks use, when they are missing:
# redis-server (real Redis in tests), chromium (the browser test), nginx-light and wrk (bench),
# and promtool (the chart tests check the alerting rules and the dashboard's queries with it).
set -euo pipefail

needed=()
command -v redis-server >/dev/null || needed+=(redis-server)
command -v chromium >/dev/null || needed+=(chromium)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || needed+=(nginx-light)
command -v wrk >/dev/null || needed+=(wrk)
for extra in ${SDA_EXTRA_PACKAGES:-}; do  # e.g. stress-ng for make test-soak
  command -v "$extra" >/dev/null || needed+=("$extra")
done
# promtool comes in Debian's prometheus package only, and alone out of it: installing the
# package would also enable a Prometheus server on port 9090, the allocator's metrics port.
promtool=yes
command -v promtool >/dev/null && promtool=no
[ ${#needed[@]} -eq 0 ] && [ "$promtool" = no ] && exit 0

echo "installing system packages: ${needed[*]}${needed[*]:+ }$([ "$promtool" = yes ] && echo promtool)" >&2
if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null; then
  sudo=(sudo)
else
  echo "error: please install these Debian packages: ${needed[*]}${needed[*]:+ }$([ "$promtool" = yes ] && echo "prometheus (for /usr/bin/promtool)")" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
if [ ${#needed[@]} -gt 0 ]; then
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${needed[@]}" >/dev/null
fi
if [ "$promtool" = yes ]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  # Downloading needs no root; as root, apt would hand the download to its _apt user, who
  # may not write to $tmp.
  (cd "$tmp" && apt-get download -qq -o APT::Sandbox::User=root prometheus >/dev/null)
  dpkg-deb --fsys-tarfile "$tmp"/prometheus_*.deb | tar -xOf - ./usr/bin/promtool >"$tmp/promtool"
  "${sudo[@]}" install -m 0755 "$tmp/promtool" /usr/local/bin/promtool
fi
