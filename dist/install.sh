#!/bin/sh
# Install Baton's files under DESTDIR: the one layout that `make install` and `make deb`
# share. Usage: install.sh BUILT_DIR GEN_DIR
#   BUILT_DIR  the built binaries (baton-if, ...)
#   GEN_DIR    baton-gen's output (man/, bash/, zsh/, fish/)
# The layout comes from the environment, with these defaults:
#   DESTDIR=  PREFIX=/usr/local  SYSCONFDIR=/etc  STATEDIR=/var/lib/baton
#   BINDIR=$PREFIX/bin  MANDIR=$PREFIX/share/man  DOCDIR=$PREFIX/share/doc/baton
#   BASHDIR=$PREFIX/share/bash-completion/completions
#   ZSHDIR=$PREFIX/share/zsh/site-functions  FISHDIR=$PREFIX/share/fish/vendor_completions.d
#   UNITDIR=$PREFIX/lib/systemd/system
# Sample files in SYSCONFDIR are installed only where none exists yet.
set -eu
[ $# -eq 2 ] || { echo "usage: install.sh BUILT_DIR GEN_DIR" >&2; exit 2; }
built=$1 gen=$2
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")

DESTDIR=${DESTDIR:-}
PREFIX=${PREFIX:-/usr/local}
SYSCONFDIR=${SYSCONFDIR:-/etc}
STATEDIR=${STATEDIR:-/var/lib/baton}
BINDIR=${BINDIR:-$PREFIX/bin}
MANDIR=${MANDIR:-$PREFIX/share/man}
DOCDIR=${DOCDIR:-$PREFIX/share/doc/baton}
BASHDIR=${BASHDIR:-$PREFIX/share/bash-completion/completions}
ZSHDIR=${ZSHDIR:-$PREFIX/share/zsh/site-functions}
FISHDIR=${FISHDIR:-$PREFIX/share/fish/vendor_completions.d}
UNITDIR=${UNITDIR:-$PREFIX/lib/systemd/system}

BINS="baton-classes baton-if baton-signal baton-run baton-serve baton-query baton-promise baton-key"
d() { install -d -m 755 "$DESTDIR$1"; }
subst() {
  sed -e "s|@BINDIR@|$BINDIR|g" -e "s|@SYSCONFDIR@|$SYSCONFDIR|g" \
      -e "s|@STATEDIR@|$STATEDIR|g" "$1"
}
sample() { # sample SRC DEST MODE: a config file, unless the admin already has one
  if [ -e "$DESTDIR$2" ]; then
    echo "install.sh: keeping $DESTDIR$2" >&2
  else
    subst "$1" > "$DESTDIR$2.new" && chmod "$3" "$DESTDIR$2.new" && mv "$DESTDIR$2.new" "$DESTDIR$2"
  fi
}

d "$BINDIR"
for b in $BINS; do install -m 755 "$built/$b" "$DESTDIR$BINDIR/$b"; done
install -m 755 "$repo/bin/baton-chain" "$DESTDIR$BINDIR/baton-chain"

d "$MANDIR/man1"
for page in "$gen"/man/*.1; do
  gzip -9n -c "$page" > "$DESTDIR$MANDIR/man1/$(basename "$page").gz"
  chmod 644 "$DESTDIR$MANDIR/man1/$(basename "$page").gz"
done
d "$BASHDIR"; d "$ZSHDIR"; d "$FISHDIR"
for f in "$gen"/bash/*; do install -m 644 "$f" "$DESTDIR$BASHDIR/"; done
for f in "$gen"/zsh/*; do install -m 644 "$f" "$DESTDIR$ZSHDIR/"; done
for f in "$gen"/fish/*; do install -m 644 "$f" "$DESTDIR$FISHDIR/"; done

d "$DOCDIR"
install -m 644 "$repo/README.md" "$repo"/docs/*.md "$DESTDIR$DOCDIR/"

# CFEngine policy for sites that run CFEngine (docs/cfengine.md).
# Their default binary directory and their own path are this install's, not the source's.
d "$PREFIX/share/baton/cfengine"
for f in "$repo"/contrib/cfengine/*.cf; do
  sed -e "s|/usr/local/bin\([\";. ]\)|$BINDIR\1|g" -e "s|/usr/local/bin/baton-|$BINDIR/baton-|g" \
      -e "s|/usr/local/share/baton/|$PREFIX/share/baton/|g" "$f" \
    > "$DESTDIR$PREFIX/share/baton/cfengine/$(basename "$f")"
  chmod 644 "$DESTDIR$PREFIX/share/baton/cfengine/$(basename "$f")"
done

d "$UNITDIR"
subst "$here/baton-serve.service.in" > "$DESTDIR$UNITDIR/baton-serve.service"
chmod 644 "$DESTDIR$UNITDIR/baton-serve.service"

d "$SYSCONFDIR/baton"; d "$SYSCONFDIR/default"
sample "$here/access" "$SYSCONFDIR/baton/access" 644
sample "$here/peers" "$SYSCONFDIR/baton/peers" 644
sample "$here/default.in" "$SYSCONFDIR/default/baton" 644

# The state dir: root's, private (signals, locks, history and job logs live there).
install -d -m 700 "$DESTDIR$STATEDIR"
