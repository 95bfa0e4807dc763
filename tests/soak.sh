#!/bin/sh
# make soak: baton-serve under signed load for SOAK_SECONDS (default 180) while signals
# are raised, expire and are cleared and the access file keeps changing; then check that
# its memory stayed flat, no request failed and no signal was lost. Bounded: it stops by
# itself. Exit 1 if any check fails.
set -eu
dir=$(cd "${1:?usage: $0 BIN_DIR (make soak passes it)}" && pwd)
seconds=${SOAK_SECONDS:-180}
# The replay cache fills for one skew window (30 s) before memory can be flat.
[ "$seconds" -ge 90 ] || { echo "soak: SOAK_SECONDS must be at least 90" >&2; exit 2; }
export TZ=UTC
unset BATON_NOW BATON_HOST BATON_STATE_DIR BATON_KEY BATON_PEERS 2>/dev/null || true

work=$(mktemp -d "${TMPDIR:-/tmp}/baton-soak.XXXXXX")
pids=
cleanup() { for p in $pids; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

state="$work/state"
"$dir/baton-serve" --keygen soak > "$work/soak.key"
echo 'allow .* key:soak' > "$work/access"
# A 30 s skew window keeps the replay cache (one entry per signed request within the
# window) under its bound at tens of thousands of requests a second.
"$dir/baton-serve" -q --listen 127.0.0.1:0 --access "$work/access" --keys "$work/soak.key" \
  --skew 30s --state-dir "$state" --host soak > "$work/listen" 2> "$work/serve.log" &
serve_pid=$!
pids="$pids $serve_pid"
n=0
until grep -q '^listening on ' "$work/listen" 2>/dev/null; do
  n=$((n + 1)); [ $n -le 200 ] || { echo "soak: baton-serve did not start" >&2; cat "$work/serve.log" >&2; exit 1; }
  sleep 0.05
done
addr=$(sed 's/^listening on //' "$work/listen")
echo "soak: $seconds s of signed load on $addr, with signals and access rules churning" >&2

"$dir/baton-load" --addr "$addr" --key "$work/soak.key" --connections 8 --seconds "$seconds" \
  --path "/v1/signals?match=keep_.%2A" > "$work/load.json" &
load_pid=$!
pids="$pids $load_pid"

# Churn: 50 long-lived keep_N signals raised again and again (all must survive), short
# ones that expire, clears, and an access file rewritten between two equivalent forms
# (each change is a reload). The set of live signals stays about the same size, so
# memory has no reason to grow.
i=0
: > "$work/rss"
start=$(date +%s)
while kill -0 "$load_pid" 2>/dev/null; do
  i=$((i + 1))
  "$dir/baton-signal" raise "keep_$((i % 50))" --ttl 1d --state-dir "$state" --host soak
  "$dir/baton-signal" raise "short_$i" --ttl 2s --state-dir "$state" --host soak
  [ $((i % 3)) -ne 0 ] || "$dir/baton-signal" clear "short_$((i - 1))" --state-dir "$state" --host soak >/dev/null || true
  if [ $((i % 10)) -eq 0 ]; then
    if [ $((i % 20)) -eq 0 ]; then printf 'allow .* key:soak\n' > "$work/access.new"
    else printf '# churn %s\nallow .* key:soak\n' "$i" > "$work/access.new"; fi
    mv "$work/access.new" "$work/access"
  fi
  if [ $((i % 20)) -eq 0 ]; then
    echo "$(( $(date +%s) - start )) $(awk '/^VmRSS/ { print $2 }' "/proc/$serve_pid/status")" >> "$work/rss"
  fi
  sleep 0.2
done
wait "$load_pid" || true

# Nothing lost: every keep_N is there, through the server.
found=$("$dir/baton-query" --key "$work/soak.key" "$addr" 'keep_.*' | wc -l)
python3 - "$work" "$i" "$found" <<'PY'
import json, sys
work, rounds, found = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
raised = min(rounds, 50)
load = json.load(open(f"{work}/load.json"))
rss = [tuple(map(int, l.split())) for l in open(f"{work}/rss") if l.strip()]
# After warm-up (the replay cache fills for one 30 s window), compare the middle third
# with the last: flat memory means no growth between them.
end = rss[-1][0] if rss else 0
middle = [r for t, r in rss if end / 3 <= t < 2 * end / 3]
last = [r for t, r in rss if t >= 2 * end / 3]
early = max(middle) if middle else 0
late = max(last) if last else 0
growth = (late - early) / early * 100 if early else 0
reloads = open(f"{work}/serve.log").read().count("reloaded")
print(f"requests {load['requests']} ({load['rps']}/s), errors {load['errors']}, p99 {load['p99_us']} us")
print(f"signals raised {raised}, all found {found == raised} ({found}); access reloads {reloads}")
print(f"resident memory: {early} KiB in the middle third, {late} KiB in the last ({growth:+.1f} %)")
bad = []
if load["errors"]: bad.append(f"{load['errors']} requests failed")
if found != raised: bad.append(f"{raised - found} signals lost")
if growth > 10: bad.append(f"memory grew {growth:.0f} %")
if reloads == 0: bad.append("the access file was never reloaded")
print("soak: " + ("PASS" if not bad else "FAIL: " + "; ".join(bad)))
sys.exit(1 if bad else 0)
PY
