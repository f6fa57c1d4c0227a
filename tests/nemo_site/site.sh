#!/usr/bin/env bash
# A real NEMO 8.1.5 site with the MQTT plugin, for the tests that look at NEMO's own pages
# (tests/nemo_pages.rs). See README.md next to this file.
#
#   site.sh setup <1|2>
#       Create (idempotently) the venv target/nemo-site/venv-<generation> with NEMO 8.1.5 and
#       the plugin of that generation (requirements-<generation>.txt, installed --no-deps).
#       Prints the venv's python on standard output; exit 0 when ready.
#
# The site itself (settings, the front proxy that logs the admin in, the management commands
# the tests call) is in this directory; the tests run `<venv>/bin/python manage.py ...` here.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"

die() { echo "nemo_site/site.sh: $*" >&2; exit 2; }

setup() {
  local gen="$1"
  [[ "$gen" == 1 || "$gen" == 2 ]] || die "generation must be 1 or 2, not '$gen'"
  local req="$HERE/requirements-$gen.txt"
  local venv="${CARGO_TARGET_DIR:-$ROOT/target}/nemo-site/venv-$gen"
  local stamp="$venv/.nemo-site-requirements"
  # One setup at a time per venv: two tests may ask at once.
  mkdir -p "$(dirname "$venv")"
  exec 9>"$venv.lock"
  flock 9
  if [[ -x "$venv/bin/python" && -f "$stamp" ]] && cmp -s "$stamp" "$req"; then
    echo "$venv/bin/python"
    return 0
  fi
  echo "nemo_site/site.sh: creating $venv (NEMO 8.1.5, plugin generation $gen) from PyPI" >&2
  if ! python3 -m venv --clear "$venv" >/dev/null 2>&1; then
    command -v apt-get >/dev/null || die "python3 -m venv failed and apt-get is not available"
    apt-get install -y python3-venv >&2 || { apt-get update >&2 && apt-get install -y python3-venv >&2; }
    python3 -m venv --clear "$venv" >&2 || die "python3 -m venv $venv failed"
  fi
  "$venv/bin/python" -m pip install --quiet --no-deps --disable-pip-version-check -r "$req" >&2 \
    || die "pip install -r $req failed"
  "$venv/bin/python" -c 'import django, NEMO, NEMO_mqtt_bridge' || die "import check failed"
  cp "$req" "$stamp"
  echo "$venv/bin/python"
}

case "${1:-}" in
  setup) shift; [[ $# -eq 1 ]] || die "usage: site.sh setup <1|2>"; setup "$1" ;;
  *) die "usage: site.sh setup <1|2>" ;;
esac
