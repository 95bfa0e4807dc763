# Baton: build, demo, test, bench, lint, install.
PREFIX ?= /usr/local
DESTDIR ?=
CARGO ?= cargo
# Release binaries are linked statically (glibc): every crontab tick starts a process,
# and a static binary starts about twice as fast as a dynamic one (see docs/performance.md).
TRIPLE := $(shell rustc -vV 2>/dev/null | sed -n 's/^host: //p')
RELEASE_DIR = target/$(TRIPLE)/release
BINS = baton-classes baton-if baton-signal baton-run baton-serve baton-query baton-promise baton-key
SCRIPTS = baton-chain
# Man pages and completions, generated from the clap definitions and docs/ (baton-gen).
GEN_DIR = target/gen

.PHONY: all build release gen demo test bench soak fuzz lint fmt install uninstall deb clean

all: build

build:
	$(CARGO) build --workspace --all-targets

release:
	RUSTFLAGS="$(RUSTFLAGS) -C target-feature=+crt-static" $(CARGO) build --release --bins --target $(TRIPLE)

# The seed's workflow on simulated hosts on loopback, with a readable timeline.
demo: release
	sh tests/demo.sh $(RELEASE_DIR)

# Every test: unit tests in the crates, then the end-to-end suite on the built binaries.
test:
	if $(CARGO) nextest --version >/dev/null 2>&1; then \
	  $(CARGO) nextest run --workspace --no-fail-fast; \
	else \
	  $(CARGO) test --workspace --no-fail-fast; \
	fi

bench: release
	sh tests/bench.sh $(RELEASE_DIR)

# baton-serve under load over TLS for SOAK_SECONDS (default 180) while signals and access
# rules churn; checks memory, failures and losses. Not part of make test.
soak: release
	sh tests/soak.sh $(RELEASE_DIR)

# The property tests that stand in for fuzzers (cargo fuzz needs nightly), FUZZ_CASES
# inputs each (default 20000): parsers of expressions, durations, times, access files,
# request heads and headers, peers, and records read from disk.
FUZZ_CASES ?= 20000
fuzz:
	PROPTEST_CASES=$(FUZZ_CASES) $(CARGO) test --release --workspace --lib fuzz_

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	sh bin/check-deps

fmt:
	$(CARGO) fmt --all

gen:
	$(CARGO) run -q --bin baton-gen -- $(GEN_DIR) docs

# Binaries, man pages, bash/zsh/fish completions, docs, the systemd unit, sample
# /etc/baton files (kept if present) and the state dir: dist/install.sh has the layout.
# SYSCONFDIR (default /etc), STATEDIR, MANDIR, BASHDIR, ZSHDIR, FISHDIR, UNITDIR override it.
install: release gen
	DESTDIR="$(DESTDIR)" PREFIX="$(PREFIX)" sh dist/install.sh $(RELEASE_DIR) $(GEN_DIR)

uninstall:
	for b in $(BINS) $(SCRIPTS); do rm -f $(DESTDIR)$(PREFIX)/bin/$$b; done
	rm -f $(DESTDIR)$(PREFIX)/share/man/man1/baton-*.1.gz
	rm -f $(DESTDIR)$(PREFIX)/share/bash-completion/completions/baton-*
	rm -f $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_baton-*
	rm -f $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/baton-*.fish
	rm -f $(DESTDIR)$(PREFIX)/lib/systemd/system/baton-serve.service
	rm -rf $(DESTDIR)$(PREFIX)/share/doc/baton
	rm -rf $(DESTDIR)$(PREFIX)/share/baton/cfengine

# A Debian package of the release binaries: target/deb/baton_VERSION_ARCH.deb.
deb: release gen
	sh dist/deb.sh $(RELEASE_DIR) $(GEN_DIR) target/deb

clean:
	$(CARGO) clean
