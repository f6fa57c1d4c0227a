#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, unit + integration
# tests against real redis-server and mosquitto (started privately on free
# loopback ports by the tests themselves), doc tests, rustdoc warnings, and the
# Debian package (scripts/check-deb.sh: a release build, dpkg-deb, lintian, the
# unpacked programs run). One debug build serves every step before the package.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

step() { printf '\n==> %s\n' "$*" >&2; }

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "unit and integration tests (real servers)"
cargo nextest run --workspace --locked --no-fail-fast

step "doc tests"
cargo test --workspace --doc --locked

step "rustdoc of the libraries (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --lib --locked --quiet

step "Debian package: build, inspect, lintian, run the unpacked programs"
bash scripts/check-deb.sh
