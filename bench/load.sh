#!/usr/bin/env bash
# Load benchmark of the token endpoint over loopback, bounded in time.
#
#   bench/load.sh [DURATION_SECONDS] [CONNECTIONS]
#
# Starts `regoauth serve` (bolt store, built-in policy, ES256 with x5c) on a free loopback port,
# creates an account with 100 grants, then drives GET /token with wrk: authenticated requests
# for three scopes (full path: key check, store lookup, Rego decision, intersection, signing)
# (repeated, and each for other repositories so that no decision is cached), and anonymous ones.
# In the same run it measures the baseline, one raw ES256 signature
# (tokens.BenchmarkRawES256), and reports every figure as a ratio to it, since these machines
# are shared and absolute numbers drift.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10}
connections=${2:-16}
command -v wrk >/dev/null || { echo "bench/load.sh: wrk is required (apt-get install wrk)" >&2; exit 1; }

work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
go build -o "$work/regoauth" ./cmd/regoauth
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$work/regoauth" signing generate --key "$work/key.pem" --cert "$work/cert.pem" >/dev/null
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$work/refresh-secret"
cat > "$work/regoauth.yaml" <<YAML
issuer: regoauth
services: [registry.example.com]
listen: {addr: "localhost:$port"}
signing: {key_file: "$work/key.pem", cert_file: "$work/cert.pem"}
refresh_tokens: {secrets: [{file: "$work/refresh-secret"}]}
store: {url: "bolt://$work/store.db"}
limits: {max_in_flight: 4096}
log: {format: json, level: warn}
YAML
admin=$("$work/regoauth" bootstrap --config "$work/regoauth.yaml")
"$work/regoauth" serve --config "$work/regoauth.yaml" 2>"$work/serve.log" &
for _ in $(seq 1 100); do curl -sf "http://localhost:$port/readyz" >/dev/null && break; sleep 0.1; done

export REGOAUTH_SERVER="http://localhost:$port" REGOAUTH_KEY="$admin"
"$work/regoauth" accounts create user1 >/dev/null
key=$("$work/regoauth" keys create --account user1)
for i in $(seq 1 100); do
  "$work/regoauth" grants add --account user1 --repo "team$i/*" --actions pull,push >/dev/null
done
auth=$(printf 'user1:%s' "$key" | base64 -w0)
url="http://localhost:$port/token?service=registry.example.com&scope=repository:team7/app:push,pull&scope=repository:team42/base:pull&scope=repository:other/x:pull"
curl -sf -H "Authorization: Basic $auth" "$url" | python3 -c 'import json,sys; assert json.load(sys.stdin)["token"]' \
  || { echo "bench/load.sh: the token request fails" >&2; exit 1; }

echo "baselines: raw ES256 and RS256 (2048-bit) signatures (go test -bench 'BenchmarkRaw' ./tokens)"
go test ./tokens -run '^$' -bench 'BenchmarkRaw' -benchtime 2s > "$work/raw.txt"
raw_ns=$(awk '/BenchmarkRawES256/ {print $3}' "$work/raw.txt")
rsa_ns=$(awk '/BenchmarkRawRS256/ {print $3}' "$work/raw.txt")
cores=$(nproc)

run_wrk() { # label, extra wrk args...
  local label=$1; shift
  wrk -t2 -c"$connections" -d"${duration}s" --latency "$@" "$url" > "$work/wrk.txt"
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {print $2}' "$work/wrk.txt")
  p50=$(awk '$1=="50%" {print $2}' "$work/wrk.txt")
  p99=$(awk '$1=="99%" {print $2}' "$work/wrk.txt")
  grep -q "Non-2xx" "$work/wrk.txt" && { echo "bench/load.sh: $label: non-2xx responses" >&2; cat "$work/wrk.txt" >&2; exit 1; }
  python3 - "$label" "$rps" "$p50" "$p99" "$raw_ns" "$cores" <<'PY'
import sys
label, rps, p50, p99, raw_ns, cores = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4], float(sys.argv[5]), int(sys.argv[6])
cost = cores / rps * 1e9 / raw_ns         # machine time per token, in raw signatures
print(f"{label:<34} {rps:9.0f} req/s  p50 {p50:>8}  p99 {p99:>8}  = {cost:5.1f} raw ES256 signatures of machine time per token")
PY
}
echo "raw ES256: $raw_ns ns/op on one core; raw RS256: $rsa_ns ns/op = $(python3 -c "print(f'{$rsa_ns/$raw_ns:.1f}')") ES256 signatures"
echo "load: ${duration}s per run, $connections connections, wrk and the server sharing $cores cores"
echo "(machine time per token = cores / throughput, wrk's own share included; lower is better)"
# Every request for another repository: the decision cache never hits, the policy evaluates.
cat > "$work/distinct.lua" <<'LUA'
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, "/token?service=registry.example.com&scope=repository:team7/app" .. n ..
    ":push,pull&scope=repository:team42/base:pull&scope=repository:other/x" .. n .. ":pull")
end
LUA
run_wrk "authenticated, 3 scopes, 100 grants" -H "Authorization: Basic $auth"
run_wrk "  the same, every scope new" -H "Authorization: Basic $auth" -s "$work/distinct.lua"
run_wrk "anonymous, 3 scopes"
