#!/usr/bin/env bash
# The scale figure of the README: token-server latency and memory with 1,000 keys and grants in
# Redis (the baseline) and with 1,000,000, measured in one run on loopback, reported as ratios.
# It starts its own redis-servers and regoauth processes and stops them; nothing else is touched.
# Extra arguments go to the benchmark, e.g. bench/redis-scale.sh -keys 200000 -rounds 4.
# Exit status: 0 when both ratios are within 1.20, 3 when one is not, 1 on error.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v redis-server >/dev/null || { echo "redis-server is not installed (Debian: apt-get install redis-server)" >&2; exit 1; }
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/regoauth" ./cmd/regoauth
go build -o "$bin/redisscale" ./bench/redisscale
exec "$bin/redisscale" -regoauth "$bin/regoauth" -timeout 15m "$@"
