#!/usr/bin/env bash
# Records docs/demo/load-test.mjs in a private namespace with `conntrack-monitor record`, makes
# the HTML report and its screenshot (docs/report.png). Root, under the kernel lock:
#   flock /tmp/ctmon-kernel.lock docs/demo/record-demo.sh [MAX] [load-test.mjs flags...]
# nf_conntrack_max is set to MAX (default 16384) for the run, so that a laptop-sized load fills
# the table, and restored on exit whatever happens. TIME_WAIT=S sets the namespace's
# nf_conntrack_tcp_timeout_time_wait; OUT=FILE names the recording (docs/demo/before.ndjson);
# SCREENSHOT=0 skips the report and screenshot.
set -euo pipefail
cd "$(dirname "$0")/../.."
MAX=${1:-16384}
shift || true
NS=ctmon-demo-$$
OUT=${OUT:-docs/demo/before.ndjson}
SAVED=$(cat /proc/sys/net/netfilter/nf_conntrack_max)
cleanup() {
  echo "$SAVED" >/proc/sys/net/netfilter/nf_conntrack_max
  ip netns del "$NS" 2>/dev/null || true
}
trap cleanup EXIT
ip netns add "$NS"
ip -n "$NS" link set lo up
# conntrack runs in a namespace once a rule uses it
ip netns exec "$NS" nft -f - <<'NFT'
table inet demo {
  chain in { type filter hook input priority 0; ct state invalid drop; }
}
NFT
if [ -n "${TIME_WAIT:-}" ]; then
  ip netns exec "$NS" sysctl -q -w net.netfilter.nf_conntrack_tcp_timeout_time_wait="$TIME_WAIT"
fi
echo "$MAX" >/proc/sys/net/netfilter/nf_conntrack_max
status=0
# The recorder runs inside the namespace too, so the header has the namespace's timeouts.
ip netns exec "$NS" node dist/cli.js record --out "$OUT" -- node docs/demo/load-test.mjs "$@" || status=$?
echo "load test exit status: $status"
cleanup
trap - EXIT
[ "${SCREENSHOT:-1}" = 0 ] && exit 0
mkdir -p build
node dist/cli.js report "$OUT" --html build/demo-report.html
# The README shows the top of the page: the verdict, the key figures and the charts.
node scripts/report-screenshot.mjs build/demo-report.html docs/report.png --until '.grid'
