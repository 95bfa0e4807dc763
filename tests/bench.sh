#!/bin/sh
# make bench: Baton against CFEngine 3.21 and the floor (/bin/true), measured in the same
# run on this machine. Prints a table and writes target/bench/bench.json.
#   - a crontab tick: whole-process baton-if and baton-classes, against cf-promises
#     --show-classes and cf-agent -K on an equivalent policy
#   - peer queries: baton-serve requests per second on kept-alive connections (wrk)
set -eu
dir=$(cd "${1:?usage: $0 BIN_DIR (make bench passes it)}" && pwd)
out=target/bench
mkdir -p "$out"
export TZ=UTC

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
need hyperfine:hyperfine cf-promises:cfengine3 wrk:wrk python3:python3

work=$(mktemp -d "${TMPDIR:-/tmp}/baton-bench.XXXXXX")
pids=
cleanup() { for p in $pids; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

# An equivalent CFEngine policy: decide the same expression, run nothing.
cat > "$work/tick.cf" <<'CF'
body common control { bundlesequence => { "tick" }; }
bundle agent tick {
reports:
  Hr16.Min45_50::
    "due";
}
CF
state="$work/state"
mkdir -p "$state"

echo "bench: crontab tick (hyperfine, whole processes)" >&2
hyperfine -N --warmup 20 --runs 200 --ignore-failure --export-json "$work/tick.json" \
  -n true "/bin/true" \
  -n baton-if "$dir/baton-if --state-dir $state --host h Hr16.Min45_50" \
  -n baton-classes "$dir/baton-classes --state-dir $state --host h" \
  -n cf-promises "cf-promises -f $work/tick.cf --show-classes" \
  -n cf-agent "cf-agent -K -f $work/tick.cf" >/dev/null 2>&1

echo "bench: peer queries (wrk, kept-alive connections, 10 s each)" >&2
BATON_NOW=@1327423620 "$dir/baton-signal" raise did_my_job --state-dir "$state" --host h --ttl 1d
echo 'allow .* 127.0.0.1' > "$work/access"
BATON_NOW=@1327423620 "$dir/baton-serve" -q --listen 127.0.0.1:0 --access "$work/access" \
  --state-dir "$state" --host h > "$work/listen" 2> "$work/serve.log" &
pids="$pids $!"
n=0
until grep -q listening "$work/listen" 2>/dev/null; do
  n=$((n + 1)); [ $n -le 200 ] || { echo "bench: baton-serve did not start" >&2; cat "$work/serve.log" >&2; exit 1; }
  sleep 0.05
done
addr=$(sed 's/listening on //' "$work/listen")
for c in 1 16 256; do
  t=2; [ $c -lt 2 ] && t=1
  wrk -t $t -c $c -d 10s --latency "http://$addr/v1/signals?match=did.%2A" > "$work/wrk_$c.txt" 2>&1 || true
done

python3 - "$work" "$out/bench.json" <<'PY'
import json, re, sys, platform, os
work, dest = sys.argv[1], sys.argv[2]
tick = json.load(open(f"{work}/tick.json"))["results"]
by = {r["command"]: r for r in tick}
def ms(r, k): return r[k] * 1000
rows = []
print(f"{'measure':<44}{'median':>12}{'stddev':>10}{'vs /bin/true':>14}{'CFEngine/Baton':>16}")
floor = by["true"]["median"]
for name, ref in [("true", None), ("baton-if", "cf-promises"), ("baton-classes", "cf-promises"),
                  ("cf-promises", None), ("cf-agent", None)]:
    r = by[name]
    vs_cf = ""
    if name.startswith("baton"):
        vs_cf = f"{by['cf-agent']['median'] / r['median']:.1f}x / {by['cf-promises']['median'] / r['median']:.1f}x"
    print(f"{'tick: ' + name:<44}{ms(r,'median'):>10.2f}ms{ms(r,'stddev'):>8.2f}ms{r['median']/floor:>13.2f}x{vs_cf:>16}")
    rows.append({"measure": f"tick {name}", "median_ms": ms(r, "median"), "stddev_ms": ms(r, "stddev"),
                 "ratio_to_true": r["median"] / floor})
def parse_wrk(text):
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    lat = dict(re.findall(r"\s+(50|99)%\s+([\d.]+\w+)", text))
    errs = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return (float(rps.group(1)) if rps else 0.0, lat.get("50", "?"), lat.get("99", "?"), int(errs.group(1)) if errs else 0)
for c in (1, 16, 256):
    rps, p50, p99, errs = parse_wrk(open(f"{work}/wrk_{c}.txt").read())
    print(f"{'baton-serve, ' + str(c) + ' clients (req/s, p50, p99)':<44}{rps:>12.0f}{p50:>10}{p99:>14}{'' if not errs else str(errs) + ' errors':>16}")
    rows.append({"measure": f"serve {c} clients", "requests_per_s": rps, "p50": p50, "p99": p99, "non_2xx": errs})
json.dump({"machine": {"cpus": os.cpu_count(), "platform": platform.platform()}, "rows": rows}, open(dest, "w"), indent=1)
print(f"\n(CFEngine/Baton: cf-agent -K / cf-promises --show-classes over Baton's median; JSON in {dest})")
PY
