#!/usr/bin/env bash
# The token server's load benchmark, over loopback, bounded in time (it prints how long it will
# take): servers on bolt and on Redis, and one on bolt evaluating every decision by OPA
# (policy.native: false), each store holding 1,000 accounts (each with its own API key and 10–100
# grants), GET /token driven by wrk at 8 and 64 connections with requests no decision cache can
# answer, beside three references measured in the same run — the raw ES256 signing rate of
# these cores, anonymous requests for a public repository, one cached request — and, when
# PEER_URL is set, any other token server. See bench/tokenload for what it measures and how.
#
#   bench/load.sh [tokenload flags]        e.g. -duration 10s -connections 64 -stores bolt
#   bench/load.sh SECONDS [CONNECTIONS]    the older form: one duration, one connection count
#   PEER_URL='http://127.0.0.1:5001/auth?service=…&scope=…' [PEER_NAME=…] [PEER_PID=…] bench/load.sh
#
# It starts its own redis-server and regoauth processes on free loopback ports and stops them;
# nothing else is touched. Exit status: 0 after a valid run, 3 when a response failed (status
# ≥ 400, socket error, timeout), 1 on error.
set -euo pipefail
cd "$(dirname "$0")/.."
for program in wrk redis-server; do
  command -v "$program" >/dev/null || { echo "bench/load.sh: $program is required (Debian: apt-get install $program)" >&2; exit 1; }
done
args=("$@")
if [[ $# -ge 1 && $1 =~ ^[0-9]+$ ]]; then
  args=(-duration "${1}s")
  [[ $# -ge 2 ]] && args+=(-connections "$2")
fi
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/regoauth" ./cmd/regoauth
go build -o "$bin/tokenload" ./bench/tokenload
"$bin/tokenload" -regoauth "$bin/regoauth" "${args[@]}"
