#!/bin/sh
# Regenerate cfengine_time_classes.jsonl: ask CFEngine 3.21 itself which time classes it
# defines at each instant listed below (needs cfengine3 and faketime from Debian).
# Usage: tests/conformance/generate.sh > tests/conformance/cfengine_time_classes.jsonl
set -eu
policy=$(mktemp /tmp/baton-empty.XXXXXX.cf)
trap 'rm -f "$policy"' EXIT
printf 'body common control { bundlesequence => { "main" }; }\nbundle agent main { }\n' > "$policy"

# TZ and UTC instant: DST gaps and overlaps, half-hour and 45-minute zones, New Year in
# one zone but not in UTC, and every boundary of buckets, quarters and shifts.
while read -r tz when; do
  [ -n "$tz" ] || continue
  epoch=$(date -u -d "$when" +%s)
  local=$(TZ=$tz date -d "@$epoch" +%Y-%m-%dT%H:%M:%S%:z)
  classes=$(TZ=$tz faketime "@$epoch" cf-promises -f "$policy" --show-classes 2>/dev/null |
    awk '$2 ~ /time_based/ { printf "%s\"%s\"", sep, $1; sep = ", " }')
  printf '{"tz": "%s", "epoch": %s, "local": "%s", "classes": [%s]}\n' "$tz" "$epoch" "$local" "$classes"
done <<'LIST'
UTC 2012-01-24T16:47:00Z
UTC 2012-01-24T16:45:00Z
UTC 2012-01-24T16:44:59Z
UTC 2012-01-24T16:50:00Z
UTC 2024-02-29T23:59:59Z
UTC 2024-03-01T00:00:00Z
UTC 2025-12-31T23:59:59Z
UTC 2026-01-01T00:00:00Z
UTC 2026-06-01T05:59:59Z
UTC 2026-06-01T06:00:00Z
UTC 2026-06-01T11:59:59Z
UTC 2026-06-01T12:00:00Z
UTC 2026-06-01T17:59:59Z
UTC 2026-06-01T18:00:00Z
UTC 2026-06-01T09:14:59Z
UTC 2026-06-01T09:15:00Z
UTC 2026-06-01T09:29:59Z
UTC 2026-06-01T09:30:00Z
UTC 2026-06-01T09:45:00Z
UTC 2026-06-01T09:55:00Z
UTC 2026-06-01T09:05:00Z
America/New_York 2024-03-10T06:59:59Z
America/New_York 2024-03-10T07:00:00Z
America/New_York 2024-11-03T05:30:00Z
America/New_York 2024-11-03T06:30:00Z
America/New_York 2025-01-01T03:00:00Z
America/New_York 2025-01-01T05:00:00Z
Europe/Berlin 2024-03-31T01:00:00Z
Europe/Berlin 2024-10-27T00:30:00Z
Europe/Berlin 2024-10-27T01:30:00Z
Europe/Berlin 2024-12-31T23:30:00Z
Europe/Berlin 2023-10-29T00:30:00Z
Europe/Berlin 2023-10-29T01:30:00Z
Australia/Sydney 2024-04-06T15:30:00Z
Australia/Sydney 2024-04-06T16:30:00Z
Australia/Sydney 2024-10-05T15:59:59Z
Australia/Sydney 2024-10-05T16:00:00Z
America/Santiago 2024-04-07T02:30:00Z
America/Santiago 2024-04-07T03:30:00Z
America/Santiago 2024-09-08T03:59:59Z
America/Santiago 2024-09-08T04:00:00Z
Asia/Kolkata 2024-06-15T18:29:59Z
Asia/Kolkata 2024-06-15T18:30:00Z
Asia/Kolkata 2024-12-31T18:45:00Z
Asia/Kathmandu 2024-06-15T18:15:00Z
Asia/Kathmandu 2024-06-15T00:00:00Z
Asia/Kathmandu 2024-12-31T18:14:59Z
Asia/Kathmandu 2024-12-31T18:15:00Z
Australia/Lord_Howe 2024-04-06T14:59:00Z
Australia/Lord_Howe 2024-04-06T15:29:00Z
Australia/Lord_Howe 2024-10-05T15:30:00Z
Pacific/Chatham 2024-06-15T11:15:00Z
Pacific/Chatham 2024-12-31T10:15:00Z
America/St_Johns 2025-01-01T03:29:59Z
America/St_Johns 2025-01-01T03:30:00Z
Pacific/Kiritimati 2024-12-31T10:00:00Z
Pacific/Pago_Pago 2025-01-01T10:59:00Z
Pacific/Pago_Pago 2025-01-01T11:00:00Z
LIST
