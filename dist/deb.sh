#!/bin/sh
# Build the Debian package from built binaries: stage the same layout as `make install`
# (install.sh) under /usr, add the control files, and let dpkg-deb pack it with root as
# owner (no fakeroot needed). Usage: deb.sh BUILT_DIR GEN_DIR OUT_DIR
# Prints the path of the .deb. DEB_COMPRESS (default xz) is dpkg-deb's -Z.
set -eu
[ $# -eq 3 ] || { echo "usage: deb.sh BUILT_DIR GEN_DIR OUT_DIR" >&2; exit 2; }
built=$1 gen=$2 out=$3
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$repo/Cargo.toml" | head -n 1)
arch=$(dpkg --print-architecture)
root=$out/root
rm -rf "$root"
mkdir -p "$root/DEBIAN"

DESTDIR=$root PREFIX=/usr SYSCONFDIR=/etc STATEDIR=/var/lib/baton \
  ZSHDIR=/usr/share/zsh/vendor-completions UNITDIR=/lib/systemd/system \
  sh "$here/install.sh" "$built" "$gen"
install -m 644 "$here/debian/copyright" "$root/usr/share/doc/baton/copyright"

size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
{
  echo "Package: baton"
  echo "Version: $version"
  echo "Architecture: $arch"
  echo "Maintainer: Baton maintainers <baton@localhost>"
  echo "Installed-Size: $size"
  # make release links statically; a debug build (the package test's) links these.
  echo "Depends: libc6, libgcc-s1"
  echo "Recommends: cron | cron-daemon"
  echo "Section: admin"
  echo "Priority: optional"
  echo "Description: CFEngine-style distributed scheduling for cron and shell"
  echo " Small single-purpose binaries that crontab lines chain with pipes and &&, so"
  echo " that a job on one host follows jobs on other hosts only when they really"
  echo " succeeded: baton-if, baton-run, baton-signal, baton-serve, baton-query,"
  echo " baton-classes and baton-chain, with man pages, shell completions and a"
  echo " hardened systemd unit for baton-serve."
} > "$root/DEBIAN/control"
printf '%s\n' /etc/baton/access /etc/baton/peers /etc/default/baton > "$root/DEBIAN/conffiles"
for s in postinst prerm postrm; do install -m 755 "$here/debian/$s" "$root/DEBIAN/$s"; done

deb=$out/baton_${version}_${arch}.deb
dpkg-deb --root-owner-group -Z"${DEB_COMPRESS:-xz}" --build "$root" "$deb" >/dev/null
echo "$deb"
