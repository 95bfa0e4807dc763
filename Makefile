# Baton: build, demo, test, bench, lint, install.
PREFIX ?= /usr/local
DESTDIR ?=
CARGO ?= cargo
# Release binaries are linked statically (glibc): every crontab tick starts a process,
# and a static binary starts about twice as fast as a dynamic one (see docs/performance.md).
TRIPLE := $(shell rustc -vV 2>/dev/null | sed -n 's/^host: //p')
RELEASE_DIR = target/$(TRIPLE)/release
BINS = baton-classes baton-if baton-signal baton-run baton-serve baton-query
SCRIPTS = baton-chain

.PHONY: all build release demo test bench soak fuzz lint fmt install uninstall clean

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

# baton-serve under signed load for SOAK_SECONDS (default 180) while signals and access
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

fmt:
	$(CARGO) fmt --all

install: release
	install -d $(DESTDIR)$(PREFIX)/bin
	for b in $(BINS); do install -m 755 $(RELEASE_DIR)/$$b $(DESTDIR)$(PREFIX)/bin/$$b; done
	for s in $(SCRIPTS); do install -m 755 bin/$$s $(DESTDIR)$(PREFIX)/bin/$$s; done

uninstall:
	for b in $(BINS) $(SCRIPTS); do rm -f $(DESTDIR)$(PREFIX)/bin/$$b; done

clean:
	$(CARGO) clean
