#!/usr/bin/env bash
# Installs what a fresh Debian/Ubuntu machine lacks to build and test nemo-mqtt:
# redis-server, mosquitto (+ clients), cmake (paho-mqtt's bundled C library),
# libssl-dev, pkg-config, chromium (the browser tests), python3 and python3-venv
# (the Django example; NEMO 8.1.5 from PyPI for tests/nemo_pages.rs), postgresql (nemo-testkit's private PostgreSQL servers;
# the tests never use the cluster the package may start) and sqlite3 (tests write
# to a SQLite file from a second process).
# Idempotent: installs only what is missing. Needs root (or sudo).
set -euo pipefail

missing=()
have_cmd() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]; }
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
# Debian's postgresql package puts initdb in /usr/lib/postgresql/<version>/bin, not on PATH.
have_initdb() {
    have_cmd initdb && return 0
    local bin
    for bin in /usr/lib/postgresql/*/bin/initdb; do [ -x "$bin" ] && return 0; done
    return 1
}

have_cmd redis-server      || missing+=(redis-server)
have_cmd redis-cli         || missing+=(redis-tools)
have_cmd mosquitto         || missing+=(mosquitto)
have_cmd mosquitto_sub     || missing+=(mosquitto-clients)
have_cmd cmake             || missing+=(cmake)
have_cmd pkg-config        || missing+=(pkg-config)
have_pkg libssl-dev        || missing+=(libssl-dev)
have_cmd chromium          || missing+=(chromium)
have_cmd python3           || missing+=(python3)   # runs the Django example in the tests
# NEMO's own pages (tests/nemo_pages.rs) run a real NEMO in a venv: python3 -m venv needs ensurepip.
python3 -c 'import ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
have_initdb                || missing+=(postgresql) # initdb + postgres for nemo-testkit::PostgresServer
have_cmd sqlite3           || missing+=(sqlite3)   # the sqlite3 CLI

if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}" >&2
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: cargo not found; install Rust from https://rustup.rs (rust-version is in Cargo.toml)" >&2
    exit 1
fi
if ! cargo nextest --version >/dev/null 2>&1; then
    echo "setup: installing cargo-nextest" >&2
    cargo install --locked cargo-nextest
fi
