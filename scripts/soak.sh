#!/usr/bin/env bash
# The whole suite again and again: IDLE runs on an otherwise idle machine, then LOADED runs
# with every core kept busy by stress-ng. A suite that tells the truth is green every time.
# Usage: scripts/soak.sh [IDLE] [LOADED]   (make test-soak: 5 and 3)
set -uo pipefail
cd "$(dirname "$0")/.."

idle=${1:-5}
loaded=${2:-3}
pytest=.venv/bin/pytest
results=.soak/results.txt
mkdir -p .soak
: >"$results"
export SDA_REQUIRE_ALL=1

stress_pid=""
stop_load() { [ -n "$stress_pid" ] && kill "$stress_pid" 2>/dev/null && wait "$stress_pid" 2>/dev/null; stress_pid=""; }
trap stop_load EXIT

run() {
  local number=$1 load=$2 log=.soak/run-$1.log began status seconds summary
  began=$(date +%s)
  "$pytest" -p no:cacheprovider -q >"$log" 2>&1
  status=$?
  seconds=$(( $(date +%s) - began ))
  summary=$(tail -n 1 "$log")
  printf '%-4s %-7s %-5s %5ss  %s\n' "$number" "$load" \
    "$([ $status -eq 0 ] && echo pass || echo FAIL)" "$seconds" "$summary" | tee -a "$results"
  return $status
}

failures=0
for ((i = 1; i <= idle; i++)); do
  run "$i" idle || failures=$((failures + 1))
done
if ((loaded > 0)); then
  stress-ng --cpu "$(nproc)" --quiet &
  stress_pid=$!
  for ((i = idle + 1; i <= idle + loaded; i++)); do
    run "$i" loaded || failures=$((failures + 1))
  done
  stop_load
fi
echo "$failures of $((idle + loaded)) runs failed (logs in .soak/)" | tee -a "$results"
exit $((failures > 0))
