#!/bin/sh
# make soak: baton-serve under load over TLS (wrk) for SOAK_SECONDS (default 180) while signals
# are raised, expire and are cleared and the access file keeps changing; then check that
# its memory stayed flat, no request failed and no signal was lost. Bounded: it stops by
# itself. Exit 1 if any check fails.
set -eu
dir=$(cd "${1:?usage: $0 BIN_DIR (make soak passes it)}" && pwd)
seconds=${SOAK_SECONDS:-180}
[ "$seconds" -ge 90 ] || { echo "soak: SOAK_SECONDS must be at least 90" >&2; exit 2; }
export TZ=UTC
unset BATON_NOW BATON_HOST BATON_STATE_DIR BATON_KEY BATON_PIN BATON_PEERS 2>/dev/null || true
command -v wrk >/dev/null 2>&1 || { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }

work=$(mktemp -d "${TMPDIR:-/tmp}/baton-soak.XXXXXX")
pids=
cleanup() { for p in $pids; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

state="$work/state"
# The server's identity and a client's (mutual TLS); wrk presents no certificate and is
# admitted by address, the final check by its key.
"$dir/baton-key" new server --out "$work/id" > /dev/null
"$dir/baton-key" new soak --out "$work/id" > "$work/keys"
pin=$("$dir/baton-key" show "$work/id/server.crt")
echo 'allow .* key:soak 127.0.0.1' > "$work/access"
"$dir/baton-serve" -q --listen 127.0.0.1:0 --access "$work/access" --keys "$work/keys" \
  --tls-cert "$work/id/server.crt" --tls-key "$work/id/server.key" \
  --state-dir "$state" --host soak > "$work/listen" 2> "$work/serve.log" &
serve_pid=$!
pids="$pids $serve_pid"
n=0
until grep -q '^listening on ' "$work/listen" 2>/dev/null; do
  n=$((n + 1)); [ $n -le 200 ] || { echo "soak: baton-serve did not start" >&2; cat "$work/serve.log" >&2; exit 1; }
  sleep 0.05
done
addr=$(sed 's/^listening on //' "$work/listen")
echo "soak: $seconds s of load over TLS on $addr, with signals and access rules churning" >&2

wrk -t 2 -c 8 -d "${seconds}s" --latency "https://$addr/v1/signals?match=keep_.%2A" > "$work/load.txt" 2>&1 &
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
    if [ $((i % 20)) -eq 0 ]; then printf 'allow .* key:soak 127.0.0.1\n' > "$work/access.new"
    else printf '# churn %s\nallow .* key:soak 127.0.0.1\n' "$i" > "$work/access.new"; fi
    mv "$work/access.new" "$work/access"
  fi
  if [ $((i % 20)) -eq 0 ]; then
    echo "$(( $(date +%s) - start )) $(awk '/^VmRSS/ { print $2 }' "/proc/$serve_pid/status")" >> "$work/rss"
  fi
  sleep 0.2
done
wait "$load_pid" || true

# Nothing lost: every keep_N is there, through the server.
found=$("$dir/baton-query" --key "$work/id/soak.key" --pin "$pin" "$addr" 'keep_.*' | wc -l)
python3 - "$work" "$i" "$found" <<'PY'
import json, sys
work, rounds, found = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
raised = min(rounds, 50)
import re
text = open(f"{work}/load.txt").read()
m = re.search(r"(\d+) requests in", text)
errs = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
p99 = dict(re.findall(r"\s+(99)%\s+([\d.]+\w+)", text)).get("99", "?")
rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
load = {"requests": int(m.group(1)) if m else 0, "rps": rps.group(1) if rps else "?",
        "errors": (int(errs.group(1)) if errs else 0) + (sum(map(int, sock.groups())) if sock else 0) + (0 if m else 1),
        "p99_us": p99}
rss = [tuple(map(int, l.split())) for l in open(f"{work}/rss") if l.strip()]
# After warm-up, compare the middle third with the last: flat memory means no growth.
end = rss[-1][0] if rss else 0
middle = [r for t, r in rss if end / 3 <= t < 2 * end / 3]
last = [r for t, r in rss if t >= 2 * end / 3]
early = max(middle) if middle else 0
late = max(last) if last else 0
growth = (late - early) / early * 100 if early else 0
reloads = open(f"{work}/serve.log").read().count("reloaded")
print(f"requests {load['requests']} ({load['rps']}/s), errors {load['errors']}, p99 {load['p99_us']}")
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
