#!/usr/bin/env bash
# Build the Debian package nemo-mqtt_<version>_<arch>.deb (in target/debian/) with cargo-deb:
# /usr/bin/nemo-bridge, nemo-monitor, nemo-replay, their man pages (generated from the clap
# definitions with --man-page), the systemd unit (not enabled or started), the configuration
# /etc/nemo-bridge/config.toml as a conffile, and the docs under /usr/share/doc/nemo-mqtt/.
# Installs cargo-deb (and dpkg-dev for the dependency computation) when missing.
# Prints the path of the package on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v dpkg-shlibdeps >/dev/null 2>&1; then
    echo "package-deb: installing dpkg-dev" >&2
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends dpkg-dev >/dev/null
fi
if ! cargo deb --version >/dev/null 2>&1; then
    echo "package-deb: installing cargo-deb" >&2
    cargo install --locked cargo-deb --version 3.8.0
fi

echo "package-deb: release build of the three programs" >&2
cargo build --release --locked --bins
mkdir -p target/deb-assets
for program in bridge monitor replay; do
    "target/release/$program" --man-page | gzip -9n > "target/deb-assets/nemo-$program.1.gz"
done
# The upstream changelog, under the name Debian expects.
gzip -9n < CHANGELOG.md > target/deb-assets/changelog.gz
cargo deb --no-build --locked --no-strip "$@" | tail -n 1
