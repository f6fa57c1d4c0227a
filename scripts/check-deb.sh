#!/usr/bin/env bash
# Check the Debian package without installing it into this machine: build it, read its
# control data and file list, run lintian (no errors; the accepted warnings are listed with a
# reason each in packaging/lintian-accepted.txt; any other warning fails too), unpack it into a temporary root and run the
# unpacked programs there.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v lintian >/dev/null 2>&1; then
    echo "check-deb: installing lintian" >&2
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends lintian >/dev/null
fi

deb=$(bash scripts/package-deb.sh)
echo "check-deb: $deb ($(du -h "$deb" | cut -f1))"
fail() { echo "check-deb: FAIL: $*" >&2; exit 1; }

info=$(dpkg-deb --info "$deb")
echo "$info" | grep -q '^ Package: nemo-mqtt$' || fail "package name"
echo "$info" | grep -Eq '^ Depends: .*libc6' || fail "Depends lacks libc6: $(echo "$info" | grep Depends)"
echo "$info" | grep -Eq '^ Depends: .*libssl3' || fail "Depends lacks libssl3: $(echo "$info" | grep Depends)"
echo "$info" | grep -q '^ Recommends: redis-server, mosquitto$' || fail "Recommends"
dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles | grep -qx '/etc/nemo-bridge/config.toml' \
    || fail "config.toml is not a conffile"

contents=$(dpkg-deb --contents "$deb" | awk '{print $6}')
for path in ./usr/bin/nemo-bridge ./usr/bin/nemo-monitor ./usr/bin/nemo-replay \
    ./etc/nemo-bridge/config.toml ./usr/lib/systemd/system/nemo-bridge.service \
    ./usr/share/man/man1/nemo-bridge.1.gz ./usr/share/man/man1/nemo-monitor.1.gz \
    ./usr/share/man/man1/nemo-replay.1.gz ./usr/share/doc/nemo-mqtt/copyright \
    ./usr/share/doc/nemo-mqtt/operator-guide.md ./usr/share/doc/nemo-mqtt/configuration.md; do
    echo "$contents" | grep -qx "$path" || fail "missing $path"
done
# The unit is installed, not enabled or started: the operator configures first.
if dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./postinst 2>/dev/null | grep -Eq 'systemctl (--[a-z-]+ )*(start|enable)|deb-systemd-invoke start'; then
    fail "postinst enables or starts the service"
fi

suppress=$(awk '!/^#/ && NF {print $1}' packaging/lintian-accepted.txt | paste -sd, -)
echo "check-deb: lintian (accepted: ${suppress:-none})"
args=(--fail-on error,warning --tag-display-limit 0)
if [ -n "$suppress" ]; then args+=(--suppress-tags "$suppress"); fi
# Root is what CI runs as; lintian only warns about it.
lintian "${args[@]}" "$deb" 2> >(grep -v 'running with root privileges' >&2)

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
dpkg-deb -x "$deb" "$root"
for program in nemo-bridge nemo-monitor nemo-replay; do
    "$root/usr/bin/$program" --version
done
"$root/usr/bin/nemo-bridge" --check-config -c "$root/etc/nemo-bridge/config.toml" >/dev/null
zcat "$root/usr/share/man/man1/nemo-bridge.1.gz" | grep -q 'nemo\\-bridge' || fail "man page"
size=$(stat -c %s "$root/usr/bin/nemo-bridge")
echo "check-deb: nemo-bridge is $((size / 1024 / 1024)) MiB"
echo "check-deb: ok"
