#!/bin/sh
# Latency under load on one core (docs/load.md): one broker on the memory
# store pinned to CPU 0 with GOMAXPROCS=1, this tool pinned to CPU 1; for
# each flow, fedbroker-load -find-max: the closed loop's throughput, then
# an open loop at half of it, with p50/p90/p99/p99.9/max. Run from the
# repository root:
#   sh cmd/fedbroker-load/testdata/latency.sh [duration] [concurrency] [config] [flows]
# config defaults to memory-mincost.yaml (alice at bcrypt cost 4); with
# memory.yaml the login flow is bcrypt cost 10. Listens on 5556 (broker)
# and 5599 (the tool's workload issuer), loopback only.
set -eu
D=${1:-10s}
C=${2:-16}
CFG=${3:-memory-mincost.yaml}
FLOWS=${4:-client_credentials exchange refresh login}
T=cmd/fedbroker-load/testdata
B=$(mktemp -d)
go build -o "$B/fedbroker" ./cmd/fedbroker
go build -o "$B/fedbroker-load" ./cmd/fedbroker-load
PID=""
# serve keeps its listener open for the drain period after SIGTERM: wait
# for it, so that the next run can bind the port.
cleanup() { if [ -n "$PID" ]; then kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null || true; fi; rm -rf "$B"; }
trap cleanup EXIT

GOMAXPROCS=1 taskset -c 0 "$B/fedbroker" serve --config "$T/$CFG" --log-level error & PID=$!
for _ in $(seq 100); do curl -fs http://127.0.0.1:5556/readyz >/dev/null 2>&1 && break; sleep 0.1; done

for f in $FLOWS; do
  case $f in
    client_credentials) A="-client-id svc" ;;
    exchange) A="-client-id ci" ;;
    *) A="-public-client app -redirect-uri http://127.0.0.1:9999/cb -user alice" ;;
  esac
  echo "== $CFG  flow $f  (load average $(cut -d' ' -f1-3 /proc/loadavg))"
  FEDBROKER_LOAD_CLIENT_SECRET=bench-svc-secret-0123456789abcdef FEDBROKER_LOAD_PASSWORD=bench-password-2024 \
    taskset -c 1 "$B/fedbroker-load" -flow "$f" -find-max -concurrency "$C" -duration "$D" -progress 0 $A
done
