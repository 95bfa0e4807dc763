#!/bin/sh
# make demo: the host's classes, and the seed's expressions evaluated at the seed's instant.
set -eu
dir=${1:-target/release}
export TZ=UTC
echo "== this host's classes (baton-classes), first lines"
"$dir/baton-classes" | head -n 12
echo "== the seed's expressions at 2012-01-24 16:47 (baton-if --explain)"
for host in Host1 Host2; do
  for expr in 'Host1.Day24.January.Year2012.Hr16.Min45_50' 'Host2.Day24.January.Year2012.Hr16.Min50_55'; do
    if "$dir/baton-if" --host "$host" --at '2012-01-24 16:47' "$expr"; then v=true; else v=false; fi
    echo "$host: $expr => $v"
  done
done
"$dir/baton-if" --host Host1 --at '2012-01-24 16:47' --explain 'Host1.Day24.January.Year2012.Hr16.Min45_50'
