#!/bin/sh
# make bench: Baton against CFEngine 3.21 and the floor (/bin/true), measured in the same
# run on this machine. Prints a table and writes target/bench/bench.json. See
# docs/performance.md for what each figure means.
set -eu
dir=$(cd "${1:?usage: $0 BIN_DIR (make bench passes it)}" && pwd)
out=$(pwd)/target/bench
mkdir -p "$out"
export TZ=UTC
unset BATON_NOW BATON_HOST BATON_STATE_DIR BATON_KEY BATON_PEERS 2>/dev/null || true

need() {
  missing=
  for pkg in "$@"; do
    cmd=${pkg%%:*}; p=${pkg#*:}
    command -v "$cmd" >/dev/null 2>&1 || missing="$missing $p"
  done
  if [ -n "$missing" ]; then
    echo "bench: installing$missing" >&2
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  fi
}
need hyperfine:hyperfine cf-promises:cfengine3 wrk:wrk python3:python3 openssl:openssl /usr/bin/time:time etcd:etcd-server \
  /usr/sbin/nginx:nginx-light curl:curl

work=$(mktemp -d "${TMPDIR:-/tmp}/baton-bench.XXXXXX")
pids=
stop_all() { for p in $pids; do kill "$p" 2>/dev/null || true; done; for p in $pids; do wait "$p" 2>/dev/null || true; done; pids=; }
cleanup() { stop_all; rm -rf "$work"; }
trap cleanup EXIT

# wrk's clients all come from 127.0.0.1: lift baton-serve's per-address cap (64 by
# default) above wrk's 256 connections, else most of them would be refused 503.
many="--max-per-peer 512"
# Start baton-serve for a state dir; prints its address. Args: STATE ACCESS IP [extra...]
serve() {
  st=$1 acc=$2 ip=$3; shift 3
  "$dir/baton-serve" -q --listen "$ip:0" --access "$acc" --state-dir "$st" --host bench "$@" \
    > "$st.listen" 2> "$st.log" &
  pids="$pids $!"
}
address() {
  n=0
  until grep -q '^listening on ' "$1.listen" 2>/dev/null; do
    n=$((n + 1)); [ $n -le 400 ] || { echo "bench: baton-serve did not start" >&2; cat "$1.log" >&2; exit 1; }
    sleep 0.05
  done
  sed 's/^listening on //' "$1.listen"
}
# Write N live signal records (did_0 .. did_N-1) straight into a state dir.
populate() {
  python3 - "$1" "$2" <<'PY'
import json, os, sys
state, n = sys.argv[1], int(sys.argv[2])
d = os.path.join(state, "signals"); os.makedirs(d, exist_ok=True)
for i in range(n):
    rec = {"version": 1, "name": f"did_{i}", "host": "bench", "set_at": "2026-01-01T00:00:00Z",
           "expires_at": "2099-01-01T00:00:00Z", "policy": "reset", "run": None}
    with open(os.path.join(d, f"did_{i}.json"), "w") as f:
        f.write(json.dumps(rec) + "\n")
PY
}
rss_kb() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

# 1. A crontab tick.
cat > "$work/tick.cf" <<'CF'
body common control { bundlesequence => { "tick" }; }
bundle agent tick {
reports:
  Hr16.Min45_50::
    "due";
}
CF
mkdir -p "$work/tick"
echo "bench: crontab tick (hyperfine, whole processes)" >&2
hyperfine -N --warmup 20 --runs 200 --ignore-failure --export-json "$work/tick.json" \
  -n true "/bin/true" \
  -n baton-if "$dir/baton-if --state-dir $work/tick --host h Hr16.Min45_50" \
  -n baton-classes "$dir/baton-classes --state-dir $work/tick --host h" \
  -n cf-promises "cf-promises -f $work/tick.cf --show-classes" \
  -n cf-agent "cf-agent -K -f $work/tick.cf" >/dev/null 2>&1

# 2. Peer queries on kept-alive connections (wrk).
echo "bench: peer queries (wrk, 10 s each)" >&2
populate "$work/peer" 1
"$dir/baton-key" new bench --out "$work/id" > "$work/keys"
"$dir/baton-key" new server --out "$work/id" > /dev/null
echo 'allow .* 127.0.0.1 key:bench' > "$work/peer.access"
serve "$work/peer" "$work/peer.access" 127.0.0.1 $many
addr=$(address "$work/peer")
serve_pid=${pids##* }
sleep 1.2 # the store cache trusts a directory left alone for a second; measure that state
echo "$(rss_kb "$serve_pid")" > "$work/rss_idle"
for c in 1 16 256; do
  t=2; [ $c -lt 2 ] && t=1
  wrk -t $t -c $c -d 10s --latency "http://$addr/v1/signals?match=did.%2A" > "$work/wrk_$c.txt" 2>&1 || true
done
peak=0
wrk -t 2 -c 256 -d 10s "http://$addr/v1/signals?match=did.%2A" > /dev/null 2>&1 &
lp=$!
while kill -0 $lp 2>/dev/null; do
  r=$(rss_kb "$serve_pid"); [ "$r" -gt "$peak" ] && peak=$r
  sleep 0.5
done
wait $lp || true
echo "$peak" > "$work/rss_load"
stop_all

# 3. A new TLS connection per request, whole-process clients: baton-query with a pinned
#    server certificate and its own identity (mutual TLS), against cf-net connect
#    (connect, TLS, key authentication; CFEngine Community has no client that asks
#    cf-serverd for classes); and baton-query cfengine:// asking that same cf-serverd for
#    a persistent class. CFEngine runs in a work dir of its own
#    (CFENGINE_TEST_OVERRIDE_WORKDIR), its key trusting itself, with a failsafe.cf that
#    only reports.
echo "bench: new TLS connection per request" >&2
pin=$("$dir/baton-key" show "$work/id/server.crt")
serve "$work/peer" "$work/peer.access" 127.0.0.1 --keys "$work/keys" --tls-cert "$work/id/server.crt" --tls-key "$work/id/server.key"
taddr=$(address "$work/peer")
cat > "$work/cfs.cf" <<'CF'
body common control { bundlesequence => { "main" }; }
bundle agent main { }
body server control {
  port => "5309";
  allowconnects => { "127.0.0.1", "::1" };
  allowallconnects => { "127.0.0.1", "::1" };
  trustkeysfrom => { "127.0.0.1", "::1" };
  allowusers => { "root" };
}
bundle server access_rules {
access:
  "did_my_job" resource_type => "context", admit => { "127.0.0.1" };
}
CF
cfw=$work/cfwork
mkdir -p "$cfw/bin" "$cfw/inputs"
ln -s "$(command -v cf-promises)" "$cfw/bin/cf-promises"
printf '%s\n' 'body common control { bundlesequence => { "main" }; }' \
  'bundle agent main { reports: "bench: failsafe"; }' > "$cfw/inputs/failsafe.cf"
export CFENGINE_TEST_OVERRIDE_WORKDIR="$cfw"
cf-key >/dev/null 2>&1
cf-key -t "127.0.0.1:$cfw/ppkeys/localhost.pub" >/dev/null 2>&1
printf '%s\n' 'body common control { bundlesequence => { "main" }; }' \
  'bundle agent main { classes: "did_my_job" expression => "any", persistence => "60"; }' > "$work/persist.cf"
cf-agent -K -f "$work/persist.cf" >/dev/null 2>&1
cf-serverd -F -f "$work/cfs.cf" > "$work/cfs.log" 2>&1 &
cfs_pid=$!
pids="$pids $cfs_pid"
n=0; until cf-net -H 127.0.0.1:5309 connect >/dev/null 2>&1; do n=$((n + 1)); [ $n -le 100 ] || break; sleep 0.1; done
rss_kb "$cfs_pid" > "$work/rss_cfserverd"
hyperfine -N --warmup 3 --runs 40 --ignore-failure --export-json "$work/tls.json" \
  -n baton-query-tls "$dir/baton-query --pin $pin --key $work/id/bench.key $taddr did.*" \
  -n cf-net-connect "cf-net -H 127.0.0.1:5309 connect" \
  -n baton-query-cfengine "$dir/baton-query --cfengine-workdir $cfw cfengine://127.0.0.1:5309 did_my_job" >/dev/null 2>&1 || true
"$dir/baton-query" --cfengine-workdir "$cfw" cfengine://127.0.0.1:5309 did_my_job > "$work/cfq.out" 2>&1 || true
stop_all
unset CFENGINE_TEST_OVERRIDE_WORKDIR

# 4. Fan-in: one baton-query over 10, 100 and 500 servers.
echo "bench: fan-in over 10, 100, 500 servers" >&2
: > "$work/fanin.txt"
for k in 10 100 500; do
  addrs=
  i=0
  while [ $i -lt $k ]; do
    populate "$work/fan$i" 1
    echo 'allow .* 127.0.0.1' > "$work/fan$i.access"
    serve "$work/fan$i" "$work/fan$i.access" "127.0.1.$((i % 250 + 1))"
    i=$((i + 1))
  done
  i=0
  while [ $i -lt $k ]; do addrs="$addrs $(address "$work/fan$i")"; i=$((i + 1)); done
  hyperfine -N --warmup 1 --runs 5 --export-json "$work/fanin_$k.json" \
    "$dir/baton-query --timeout 10s --min $k $addrs did_0" >/dev/null 2>&1 || true
  mem=$(/usr/bin/time -f %M "$dir/baton-query" --timeout 10s $addrs did_0 2>&1 >/dev/null | tail -n 1)
  echo "$k $mem" >> "$work/fanin.txt"
  stop_all
  i=0; while [ $i -lt $k ]; do rm -rf "$work/fan$i"*; i=$((i + 1)); done
done

# 5. The store with 10, 1 000 and 100 000 live signals.
echo "bench: the store at 10, 1 000, 100 000 signals" >&2
for n in 10 1000 100000; do
  populate "$work/store$n" "$n"
  runs=30; [ "$n" -ge 100000 ] && runs=3
  hyperfine -N --warmup 1 --runs $runs --ignore-failure --export-json "$work/store_$n.json" \
    -n raise "$dir/baton-signal raise extra --state-dir $work/store$n --host bench" \
    -n list "$dir/baton-signal list did_1.* --names --state-dir $work/store$n --host bench" \
    -n if "$dir/baton-if --state-dir $work/store$n --host bench did_7" >/dev/null 2>&1
  rm -rf "$work/store$n"
done

# 6. The etcd store beside the file store and HTTP peers: raise, and one query.
echo "bench: etcd store" >&2
eport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
pport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
etcd --name b --data-dir "$work/etcd" --listen-client-urls "http://127.0.0.1:$eport" \
  --advertise-client-urls "http://127.0.0.1:$eport" --listen-peer-urls "http://127.0.0.1:$pport" \
  --initial-advertise-peer-urls "http://127.0.0.1:$pport" --initial-cluster "b=http://127.0.0.1:$pport" \
  > "$work/etcd.log" 2>&1 &
pids="$pids $!"
store="etcd://127.0.0.1:$eport"
n=0; until "$dir/baton-signal" raise did_my_job --host host1 --store "$store" 2>/dev/null; do
  n=$((n + 1)); [ $n -le 100 ] || { echo "bench: etcd did not start" >&2; cat "$work/etcd.log" >&2; exit 1; }
  sleep 0.1
done
mkdir -p "$work/files"
populate "$work/files" 1
echo 'allow .* 127.0.0.1' > "$work/files.access"
serve "$work/files" "$work/files.access" 127.0.0.1
faddr=$(address "$work/files")
hyperfine -N --warmup 5 --runs 100 --export-json "$work/etcd.json" \
  -n raise-files "$dir/baton-signal raise x --host host1 --state-dir $work/files" \
  -n raise-etcd "$dir/baton-signal raise x --host host1 --store $store" \
  -n query-http "$dir/baton-query $faddr did.*" \
  -n query-etcd "$dir/baton-query --store $store host1 did.*" >/dev/null 2>&1 || true
stop_all

# 7. baton-serve beside nginx serving the same reply as a static file (keep-alive, wrk), and
#    the cost of a one-signal match at 1 000 and 100 000 stored signals (serve and list).
echo "bench: baton-serve beside nginx; a one-signal match at 1 000 and 100 000 signals" >&2
populate "$work/ng" 1
echo 'allow .* 127.0.0.1' > "$work/ng.access"
serve "$work/ng" "$work/ng.access" 127.0.0.1 $many
naddr=$(address "$work/ng")
mkdir -p "$work/nginx/root/v1" "$work/nginx/tmp"
chmod 711 "$work" # nginx's workers (www-data) must reach the file
curl -s "http://$naddr/v1/signals?match=did_0" > "$work/nginx/root/v1/signals"
nport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/nginx/nginx.conf" <<NGINX
worker_processes auto;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/nginx/tmp; proxy_temp_path $work/nginx/tmp;
  fastcgi_temp_path $work/nginx/tmp; uwsgi_temp_path $work/nginx/tmp; scgi_temp_path $work/nginx/tmp;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$nport;
    root $work/nginx/root;
    default_type application/json;
    location / { try_files \$uri =404; }
  }
}
NGINX
/usr/sbin/nginx -c "$work/nginx/nginx.conf" -g 'daemon off;' > "$work/nginx/out.log" 2>&1 &
pids="$pids $!"
n=0; until curl -sf "http://127.0.0.1:$nport/v1/signals" >/dev/null 2>&1; do
  n=$((n + 1)); [ $n -le 100 ] || { echo "bench: nginx did not start" >&2; cat "$work/nginx/error.log" >&2; break; }
  sleep 0.1
done
wrk -t 2 -c 16 -d 10s --latency "http://$naddr/v1/signals?match=did_0" > "$work/vs_baton.txt" 2>&1 || true
wrk -t 2 -c 16 -d 10s --latency "http://127.0.0.1:$nport/v1/signals?match=did_0" > "$work/vs_nginx.txt" 2>&1 || true
wrk -t 2 -c 256 -d 10s --latency "http://$naddr/v1/signals?match=did_0" > "$work/vs_baton_256.txt" 2>&1 || true
wrk -t 2 -c 256 -d 10s --latency "http://127.0.0.1:$nport/v1/signals?match=did_0" > "$work/vs_nginx_256.txt" 2>&1 || true
stop_all
for n in 1000 100000; do
  populate "$work/scale$n" "$n"
  echo 'allow .* 127.0.0.1' > "$work/scale$n.access"
  serve "$work/scale$n" "$work/scale$n.access" 127.0.0.1 $many
  saddr=$(address "$work/scale$n")
  curl -s "http://$saddr/v1/signals?match=did_7" > /dev/null # the first request reads the store
  sleep 1.2 # the store cache trusts a directory left alone for a second; measure that state
  wrk -t 2 -c 16 -d 5s --latency "http://$saddr/v1/signals?match=did_7" > "$work/scale_serve_$n.txt" 2>&1 || true
  stop_all
  hyperfine -N --warmup 2 --runs 20 --export-json "$work/scale_list_$n.json" \
    -n list "$dir/baton-signal list did_7 --names --state-dir $work/scale$n --host bench" >/dev/null 2>&1 || true
  rm -rf "$work/scale$n"
done

python3 - "$work" "$out/bench.json" <<'PY'
import json, os, platform, re, sys
work, dest = sys.argv[1], sys.argv[2]
rows = []
def load(name):
    p = os.path.join(work, name)
    return {r.get("command"): r for r in json.load(open(p))["results"]} if os.path.exists(p) else {}
def row(measure, baton, reference=None, unit="ms", note=""):
    rows.append({"measure": measure, "baton": baton, "reference": reference, "unit": unit, "note": note})
tick = load("tick.json")
ms = lambda r: r["median"] * 1000
sd = lambda r: r["stddev"] * 1000 if r.get("stddev") is not None else 0
print(f"{'measure':<52}{'Baton':>14}{'reference':>16}{'ratio':>9}")
def show(measure, b, ref=None, unit="ms", better="lower", note=""):
    ratio = ""
    if b and ref:
        ratio = f"{(ref / b) if better == 'lower' else (b / ref):.1f}x"
    fb = f"{b:.2f}{unit}" if unit == "ms" else f"{b:.0f}{unit}"
    fr = "" if ref is None else (f"{ref:.2f}{unit}" if unit == "ms" else f"{ref:.0f}{unit}")
    print(f"{measure:<52}{fb:>14}{fr:>16}{ratio:>9}  {note}")
    row(measure, b, ref, unit, note)
floor = ms(tick["true"])
show("tick: /bin/true (the floor)", floor)
for name in ("baton-if", "baton-classes"):
    show(f"tick: {name} vs /bin/true", ms(tick[name]), floor, note=f"stddev {sd(tick[name]):.2f}ms; {ms(tick[name]) / floor:.2f}x the floor")
    show(f"tick: {name} vs cf-promises --show-classes", ms(tick[name]), ms(tick["cf-promises"]))
    show(f"tick: {name} vs cf-agent -K", ms(tick[name]), ms(tick["cf-agent"]))
def wrk(c):
    t = open(os.path.join(work, f"wrk_{c}.txt")).read()
    rps = re.search(r"Requests/sec:\s+([\d.]+)", t)
    lat = dict(re.findall(r"\s+(50|99)%\s+([\d.]+\w+)", t))
    return float(rps.group(1)) if rps else 0, lat.get("50", "?"), lat.get("99", "?")
for c in (1, 16, 256):
    rps, p50, p99 = wrk(c)
    show(f"serve, unsigned, {c} kept-alive clients (wrk)", rps, unit=" req/s", note=f"p50 {p50}, p99 {p99}")
cfs = open(os.path.join(work, "rss_cfserverd")).read().strip() if os.path.exists(os.path.join(work, "rss_cfserverd")) else ""
show("serve: resident memory idle vs cf-serverd idle", int(open(os.path.join(work, "rss_idle")).read()),
     int(cfs) if cfs.isdigit() and int(cfs) > 0 else None, unit=" KiB")
show("serve: resident memory under load (peak)", int(open(os.path.join(work, "rss_load")).read()), unit=" KiB")
tls = load("tls.json")
if "baton-query-tls" in tls and "cf-net-connect" in tls:
    show("new TLS connection per request: baton-query vs cf-net connect", ms(tls["baton-query-tls"]), ms(tls["cf-net-connect"]),
         note=f"{1000 / ms(tls['baton-query-tls']):.0f} vs {1000 / ms(tls['cf-net-connect']):.0f} per second, one client")
if "baton-query-cfengine" in tls and "cf-net-connect" in tls:
    answered = open(os.path.join(work, "cfq.out")).read().strip()
    show("cf-serverd: baton-query cfengine:// vs cf-net connect", ms(tls["baton-query-cfengine"]), ms(tls["cf-net-connect"]),
         note=f"same cf-serverd; baton-query also asks CONTEXT (answered: {answered or 'nothing'})")
for line in open(os.path.join(work, "fanin.txt")):
    k, mem = line.split()
    f = load(f"fanin_{k}.json")
    r = next(iter(f.values()), None)
    if r:
        show(f"fan-in: one baton-query over {k} servers", ms(r), note=f"peak memory {mem} KiB")
for n in (10, 1000, 100000):
    s = load(f"store_{n}.json")
    for op in ("raise", "list", "if"):
        if op in s:
            show(f"store, {n} signals: {'baton-signal ' + op if op != 'if' else 'baton-if did_7'}", ms(s[op]))
def wrk_file(name):
    p = os.path.join(work, name)
    t = open(p).read() if os.path.exists(p) else ""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", t)
    lat = dict(re.findall(r"\s+(50|99)%\s+([\d.]+\w+)", t))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
    if bad:
        print(f"bench: {name}: {bad.group(1)} answers were not 200", file=sys.stderr)
    return float(rps.group(1)) if rps else 0, lat.get("50", "?"), lat.get("99", "?")
def to_ms(text):
    m = re.match(r"([\d.]+)(us|ms|s)$", text)
    return float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)] if m else None
b16, bp50, bp99 = wrk_file("vs_baton.txt")
n16, np50, np99 = wrk_file("vs_nginx.txt")
show("keep-alive, 16 clients: baton-serve vs nginx static file", b16, n16 or None, unit=" req/s", better="higher",
     note=f"goal >= 0.8x; p99 {bp99} vs {np99}")
b256, _, b256p99 = wrk_file("vs_baton_256.txt")
n256, _, n256p99 = wrk_file("vs_nginx_256.txt")
show("keep-alive, 256 clients: baton-serve vs nginx static file", b256, n256 or None, unit=" req/s", better="higher",
     note=f"p99 {b256p99} vs {n256p99}")
p99 = to_ms(b256p99)
if p99 is not None:
    show("p99 latency at 256 connections (wrk)", p99, note="goal < 10 ms")
cost = {}
for n in (1000, 100000):
    r, _, p99n = wrk_file(f"scale_serve_{n}.txt")
    cost[n] = 1000.0 / r if r else None
    if cost[n]:
        show(f"serve cost, one-signal match, {n} stored", cost[n], note=f"{r:.0f} req/s, p99 {p99n} (16 clients)")
if cost.get(1000) and cost.get(100000):
    show("serve cost: 100 000 vs 1 000 stored signals", cost[100000], cost[1000], note="goal: within 2x (ratio >= 0.5x)")
lst = {n: load(f"scale_list_{n}.json").get("list") for n in (1000, 100000)}
for n, r in lst.items():
    if r:
        show(f"baton-signal list did_7, {n} stored", ms(r))
if lst[1000] and lst[100000]:
    show("list time: 100 000 vs 1 000 stored signals", ms(lst[100000]), ms(lst[1000]), note="goal: within 2x (ratio >= 0.5x)")
e = load("etcd.json")
if "raise-files" in e and "raise-etcd" in e:
    show("raise a signal: etcd store vs state dir", ms(e["raise-etcd"]), ms(e["raise-files"]), note="ratio < 1: the file store is faster")
if "query-http" in e and "query-etcd" in e:
    show("one query: etcd store vs HTTP peer", ms(e["query-etcd"]), ms(e["query-http"]), note="whole-process baton-query")
json.dump({"machine": {"cpus": os.cpu_count(), "platform": platform.platform()}, "rows": rows}, open(dest, "w"), indent=1)
print(f"\nratio: how many times better Baton is (reference / Baton for times). JSON: {dest}")
PY
