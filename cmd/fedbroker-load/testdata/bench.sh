#!/bin/sh
# Runs every fedbroker-load flow against 1 broker on the memory store,
# 1 broker on Redis and 3 brokers on one Redis, then the raw signing
# benchmark. Run from the repository root:
#   sh cmd/fedbroker-load/testdata/bench.sh [duration] [concurrency]
# Everything listens on loopback: brokers on 5556/5566/5576, Redis on 6390,
# the load tool's workload issuer on 5599.
set -eu
D=${1:-10s}
C=${2:-16}
T=cmd/fedbroker-load/testdata
B=$(mktemp -d)
go build -o "$B/fedbroker" ./cmd/fedbroker
go build -o "$B/fedbroker-load" ./cmd/fedbroker-load
PIDS=""
cleanup() { for p in $PIDS; do kill "$p" 2>/dev/null || true; done; rm -rf "$B"; }
trap cleanup EXIT

wait_ready() { for _ in $(seq 100); do curl -fs "$1/readyz" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "not ready: $1" >&2; exit 1; }
start() { "$B/fedbroker" serve --config "$T/$1" --log-level error & PIDS="$PIDS $!"; }
stop_brokers() { for p in $BROKERS; do kill "$p"; wait "$p" 2>/dev/null || true; done; }

load() { # targets flow
  case $2 in
    client_credentials) A="-client-id svc" ;;
    exchange) A="-client-id ci" ;;
    *) A="-public-client app -redirect-uri http://127.0.0.1:9999/cb -user alice" ;;
  esac
  echo "== $LABEL  flow $2"
  FEDBROKER_LOAD_CLIENT_SECRET=bench-svc-secret-0123456789abcdef FEDBROKER_LOAD_PASSWORD=bench-password-2024 \
    "$B/fedbroker-load" -target "$1" -flow "$2" -concurrency "$C" -duration "$D" -progress 0 $A
}
all_flows() { for f in client_credentials exchange refresh login; do load "$1" "$f"; done; }

LABEL="memory, 1 replica"
start memory.yaml; BROKERS=$!; wait_ready http://127.0.0.1:5556
all_flows http://127.0.0.1:5556
stop_brokers

redis-server --port 6390 --bind 127.0.0.1 --save "" --appendonly no --protected-mode no --loglevel warning --maxmemory-policy noeviction & PIDS="$PIDS $!"
sleep 0.3
LABEL="redis, 1 replica"
start redis-a.yaml; BROKERS=$!; wait_ready http://127.0.0.1:5556
all_flows http://127.0.0.1:5556
LABEL="redis, 3 replicas"
start redis-b.yaml; BROKERS="$BROKERS $!"; start redis-c.yaml; BROKERS="$BROKERS $!"
wait_ready http://127.0.0.1:5566; wait_ready http://127.0.0.1:5576
all_flows http://127.0.0.1:5556,http://127.0.0.1:5566,http://127.0.0.1:5576
stop_brokers

echo "== raw signing"
go test -run '^$' -bench 'BenchmarkSignES256$' -benchtime 2s ./broker/keys/
