#!/bin/sh
# make demo: the seed's workflow on five simulated hosts on loopback, each with its own
# baton-serve, state dir, key and access file, driven through a simulated afternoon by a
# clock file. Prints a timeline and a verdict; exits 1 if the workflow misbehaved.
#
#   Host1: my_job in the 16:00 hour, once (ifelapsed 100), raises did_my_job
#   Host2: follows Host1 only once Host1's did_my_job is there (the signalled sequence)
#   Host3, Host4: their own jobs; Host4's fails once and heals at the next tick
#   Host5: runs when Host2, Host3 and Host4 all succeeded (aggregation, AND)
set -eu

bin=$(cd "${1:?usage: $0 BIN_DIR (make demo passes it)}" && pwd)
repo=$(pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/baton-demo.XXXXXX")
pids=
cleanup() {
  for p in $pids; do kill "$p" 2>/dev/null || true; done
  for p in $pids; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Whatever BATON_* the caller's shell holds (a store, a key, a host) is not the demo's.
for v in $(env | sed -n 's/^\(BATON_[A-Za-z0-9_]*\)=.*/\1/p'); do unset "$v"; done
export PATH="$bin:$repo/bin:$work/jobs:/usr/bin:/bin" TZ=UTC
export BATON_NOW="$work/now" BATON_PEERS="$work/peers" JOURNAL="$work/journal"
hosts="Host1 Host2 Host3 Host4 Host5"

# Stand-in jobs: log to the journal; fail while ./fail_NAME holds a positive count.
mkdir -p "$work/jobs"
cat > "$work/jobs/job" <<'JOB'
#!/bin/sh
name=$(basename "$0")
f="fail_$name"
if [ -f "$f" ] && [ "$(cat "$f")" -gt 0 ]; then
  echo $(( $(cat "$f") - 1 )) > "$f"
  echo "$(cat "$BATON_NOW") $BATON_HOST $name failed" >> "$JOURNAL"
  exit 1
fi
echo "$(cat "$BATON_NOW") $BATON_HOST $name ran" >> "$JOURNAL"
JOB
chmod 755 "$work/jobs/job"
for j in my_job do_my_job_bundle all_of_them; do ln -s job "$work/jobs/$j"; done
: > "$JOURNAL"
echo 2012-01-24T15:55:00Z > "$BATON_NOW"

# Identities (mutual TLS: each host's key pair; every server admits every host by its
# certificate's fingerprint), access files and crontabs.
pins=
for h in $hosts; do
  mkdir -p "$work/$h/state"
  line=$(baton-key new "$h" --out "$work/$h/id")
  echo "$line" >> "$work/keys"
  pins="${pins:+$pins,}${line#* }"
done
export BATON_PIN="$pins"
echo 'allow did.* key:Host2' > "$work/Host1/access"
for h in Host2 Host3 Host4; do echo 'allow did.* key:Host5' > "$work/$h/access"; done
: > "$work/Host5/access"
echo 1 > "$work/Host4/fail_my_job"

cat > "$work/Host1/crontab" <<'CRON'
baton-if 'Host1.Hr16' && baton-run -q --ifelapsed 100 --on-repaired did_my_job -- my_job
CRON
cat > "$work/Host2/crontab" <<'CRON'
baton-query --prefix hostX Host1 'did.*' | baton-if --stdin 'Host2.hostX_did_my_job' && baton-run -q --ifelapsed 100 --on-repaired did_my_job --ttl 1h -- do_my_job_bundle
CRON
for h in Host3 Host4; do
  echo "baton-if '$h.Hr16.!did_my_job' && baton-run -q --on-repaired did_my_job --ttl 1h -- my_job" > "$work/$h/crontab"
done
cat > "$work/Host5/crontab" <<'CRON'
baton-query --prefix '{host}' Host2 Host3 Host4 'did.*' | baton-if --stdin 'Host5.Host2_did_my_job.Host3_did_my_job.Host4_did_my_job' && baton-run -q --ifelapsed 100 -- all_of_them
CRON

# One baton-serve per host, each on its own loopback address.
i=11
for h in $hosts; do
  BATON_HOST=$h BATON_STATE_DIR="$work/$h/state" baton-serve -q --listen "127.0.0.$i:0" \
    --access "$work/$h/access" --keys "$work/keys" \
    --tls-cert "$work/$h/id/$h.crt" --tls-key "$work/$h/id/$h.key" > "$work/$h/listen" 2> "$work/$h/serve.log" &
  pids="$pids $!"
  i=$((i + 1))
done
for h in $hosts; do
  n=0
  until grep -q '^listening on ' "$work/$h/listen" 2>/dev/null; do
    n=$((n + 1))
    [ $n -le 200 ] || { echo "demo: baton-serve for $h did not start" >&2; cat "$work/$h/serve.log" >&2; exit 1; }
    sleep 0.05
  done
  echo "$h $(sed 's/^listening on //' "$work/$h/listen")" >> "$work/peers"
done

echo "Baton demo: the seed's workflow on five hosts, each with its own baton-serve:"
sed 's/^/  /' "$work/peers"
echo
printf '%-6s %-6s %s\n' TIME HOST WHAT
signals() { BATON_HOST=$1 BATON_STATE_DIR="$work/$1/state" baton-signal list --names 2>/dev/null || true; }
seen=0
for h in $hosts; do : > "$work/$h/signals"; done
for t in 15:55 16:00 16:05 16:10 16:15 16:20; do
  echo "2012-01-24T$t:00Z" > "$BATON_NOW"
  events=0
  for h in $hosts; do
    (cd "$work/$h" && BATON_HOST=$h BATON_STATE_DIR="$work/$h/state" BATON_KEY="$work/$h/id/$h.key" \
      sh -c "$(cat crontab)") 2>> "$work/$h/cron.mail" || true
    total=$(wc -l < "$JOURNAL")
    if [ "$total" -gt "$seen" ]; then
      sed -n "$((seen + 1)),${total}p" "$JOURNAL" | while read -r _ host job what; do
        printf '%-6s %-6s %s %s\n' "$t" "$host" "$what" "$job"
      done
      events=$((events + total - seen))
      seen=$total
    fi
    before=$(cat "$work/$h/signals")
    signals "$h" > "$work/$h/signals"
    after=$(cat "$work/$h/signals")
    for s in $after; do
      echo "$before" | grep -qx "$s" || { printf '%-6s %-6s raised signal %s\n' "$t" "$h" "$s"; events=$((events + 1)); }
    done
    for s in $before; do
      echo "$after" | grep -qx "$s" || { printf '%-6s %-6s signal %s expired\n' "$t" "$h" "$s"; events=$((events + 1)); }
    done
  done
  [ $events -gt 0 ] || printf '%-6s %-6s %s\n' "$t" - "nothing due"
done
echo

# The verdict, from the journal.
count() { grep -c " $1 $2 ran\$" "$JOURNAL" || true; }
when() { grep " $1 $2 ran\$" "$JOURNAL" | head -n 1 | cut -d' ' -f1; }
fail=
[ "$(count Host1 my_job)" = 1 ] || fail="$fail; Host1 ran my_job $(count Host1 my_job) times"
[ "$(count Host2 do_my_job_bundle)" = 1 ] || fail="$fail; Host2 followed $(count Host2 do_my_job_bundle) times"
[ "$(count Host4 my_job)" = 1 ] && grep -q ' Host4 my_job failed$' "$JOURNAL" || fail="$fail; Host4 did not heal"
[ "$(count Host5 all_of_them)" = 1 ] || fail="$fail; Host5 ran $(count Host5 all_of_them) times"
latest=$(printf '%s\n' "$(when Host2 do_my_job_bundle)" "$(when Host3 my_job)" "$(when Host4 my_job)" | sort | tail -n 1)
[ -n "$latest" ] && [ "$(when Host5 all_of_them)" \> "$latest" -o "$(when Host5 all_of_them)" = "$latest" ] ||
  fail="$fail; Host5 ran before all three had succeeded"
# Cron mails only Host4's failure (chronic's contract: failures speak, the rest is quiet).
for h in $hosts; do
  if [ "$h" = Host4 ]; then
    grep -q '^baton-run: my_job_[0-9a-f]* failed with exit status 1 after ' "$work/$h/cron.mail" ||
      fail="$fail; Host4's failure was not mailed"
    [ "$(wc -l < "$work/$h/cron.mail")" -le 2 ] || fail="$fail; Host4's cron mailed more than its failure"
  elif [ -s "$work/$h/cron.mail" ]; then fail="$fail; $h's cron mailed: $(head -n 1 "$work/$h/cron.mail")"; fi
done
if [ -z "$fail" ]; then
  echo "verdict: PASS: Host2 followed Host1 once; Host4 healed; Host5 ran once, after Host2, Host3 and Host4 all succeeded"
else
  echo "verdict: FAIL${fail}"
  exit 1
fi
