#!/usr/bin/env bash
# Run the NEMO MQTT plugin's own 2.x bridge (PyPI nemo-mqtt-bridge 2.3.3,
# `python -m NEMO_mqtt_bridge.postgres_mqtt_bridge`, EXTERNAL mode) as a peer
# for benchmarks. See README.md next to this file.
#
#   run.sh setup
#       Create (idempotently) the venv target/peers/plugin2-venv with the pinned
#       packages below. Prints one line saying where; exit 0 when ready.
#   run.sh bridge <postgres_url> <broker_host> <broker_port>
#       exec the bridge in the foreground (the script's pid becomes the bridge's
#       pid; SIGTERM/SIGINT stop it cleanly). The database must already have the
#       plugin's tables (tests/fixtures/nemo-plugin-schema/v2-postgresql.sql);
#       nothing here runs `migrate`. If nemo_mqtt_mqttconfiguration has no
#       enabled row, one pointing at <broker_host>:<broker_port> is inserted
#       (the bridge reads its broker from that row only); if an enabled row
#       exists for another broker, this exits 2 and changes nothing.
#       Logs go to stderr at INFO (NEMO_PLUGIN2_LOG_LEVEL=WARNING for less;
#       DEBUG is refused: the bridge logs the HMAC key at DEBUG).
#
# Never starts a supervisor, an embedded broker or any other process, and
# never signals other processes.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
VENV="$ROOT/target/peers/plugin2-venv"

# What `pip install nemo-mqtt-bridge==2.3.3` resolves to (2026-12), minus
# mqttools and its dependencies (bitstruct, humanfriendly, argparse-addons):
# mqttools is imported only by the embedded broker of `--auto` mode, which
# this script never uses. Installed with --no-deps so nothing else comes in.
# paho-mqtt 2.x runs the plugin's 1.x-style client with a DeprecationWarning
# (callback API version 1), which is what users of 2.3.3 get.
PINS=(
  "nemo-mqtt-bridge==2.3.3"
  "Django==5.2.19"
  "asgiref==3.13.0"
  "sqlparse==0.6.1"
  "psycopg2-binary==2.9.13"
  "paho-mqtt==2.2.0"
)

die() { echo "plugin2/run.sh: $*" >&2; exit 2; }

setup() {
  local stamp="$VENV/.plugin2-pins"
  local want
  want="$(printf '%s\n' "${PINS[@]}")"
  if [[ -x "$VENV/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "plugin2 venv ready: $VENV ($("$VENV/bin/python" -V 2>&1), nemo-mqtt-bridge 2.3.3)"
    return 0
  fi
  mkdir -p "$(dirname "$VENV")"
  if ! python3 -m venv --clear "$VENV" >/dev/null 2>&1; then
    # Debian/Ubuntu system python: venv/ensurepip live in python3-venv.
    command -v apt-get >/dev/null || die "python3 -m venv failed and apt-get is not available"
    echo "plugin2/run.sh: installing python3-venv with apt-get" >&2
    apt-get install -y python3-venv >&2 || { apt-get update >&2 && apt-get install -y python3-venv >&2; }
    python3 -m venv --clear "$VENV" >&2 || die "python3 -m venv $VENV failed"
  fi
  "$VENV/bin/python" -m pip install --quiet --no-deps --disable-pip-version-check "${PINS[@]}" >&2 \
    || die "pip install failed"
  # Import check: the module the bridge runs and its direct dependencies.
  "$VENV/bin/python" -c 'import django, psycopg2, paho.mqtt.client, NEMO_mqtt_bridge' \
    || die "import check failed"
  printf '%s\n' "$want" >"$stamp"
  echo "plugin2 venv ready: $VENV ($("$VENV/bin/python" -V 2>&1), nemo-mqtt-bridge 2.3.3)"
}

bridge() {
  [[ $# -eq 3 ]] || die "usage: run.sh bridge <postgres_url> <broker_host> <broker_port>"
  local url="$1" host="$2" port="$3"
  [[ "$port" =~ ^[0-9]+$ ]] || die "broker port must be a number: $port"
  [[ -x "$VENV/bin/python" && -f "$VENV/.plugin2-pins" ]] || die "no venv at $VENV: run 'run.sh setup' first"

  export NEMO_PLUGIN2_DATABASE_URL="$url"
  export PYTHONPATH="$HERE"
  export DJANGO_SETTINGS_MODULE=settings
  export PYTHONUNBUFFERED=1
  # Never spawn a detached bridge/supervisor from AppConfig.ready(), never run
  # a bridge thread inside Django, never start the embedded broker.
  export NEMO_MQTT_BRIDGE_SPAWN_SUBPROCESS=0
  export NEMO_MQTT_BRIDGE_RUN_IN_DJANGO=0
  export NEMO_MQTT_BRIDGE_AUTO_START=0
  export NEMO_MQTT_BRIDGE_SPAWN_SKIP=1
  unset NEMO_MQTT_BRIDGE_DEV_PKILL || true
  # The plugin's single-instance lock is $TMPDIR/NEMO_mqtt_bridge.lock; keep
  # it away from any real installation's lock in /tmp.
  export TMPDIR="$ROOT/target/peers/plugin2-tmp"
  mkdir -p "$TMPDIR"

  # Make sure an enabled configuration row points at the broker.
  PLUGIN2_BROKER_HOST="$host" PLUGIN2_BROKER_PORT="$port" "$VENV/bin/python" - <<'PY' || exit $?
import os, sys
from urllib.parse import urlsplit, unquote, parse_qsl
import psycopg2

u = urlsplit(os.environ["NEMO_PLUGIN2_DATABASE_URL"])
conn = psycopg2.connect(
    host=u.hostname or "localhost", port=u.port or 5432,
    dbname=unquote(u.path.lstrip("/")) or "postgres",
    user=unquote(u.username or "") or "postgres",
    password=unquote(u.password or "") or None, **dict(parse_qsl(u.query)))
conn.autocommit = True
host, port = os.environ["PLUGIN2_BROKER_HOST"], int(os.environ["PLUGIN2_BROKER_PORT"])
with conn.cursor() as cur:
    # The field defaults of MQTTConfiguration, with the values the
    # customization form forces (topic_prefix 'nemo/', qos_level 1).
    cur.execute("""
        INSERT INTO nemo_mqtt_mqttconfiguration
          (name, enabled, broker_host, broker_port, keepalive, client_id,
           username, password, use_hmac, hmac_secret_key, hmac_algorithm,
           topic_prefix, qos_level, retain_messages, clean_session,
           auto_reconnect, reconnect_delay, max_reconnect_attempts,
           log_messages, log_level, created_at, updated_at)
        SELECT 'Default MQTT Configuration', true, %s, %s, 60, 'nemo-mqtt-client',
           NULL, NULL, false, NULL, 'sha256',
           'nemo/', 1, false, true,
           true, 5, 10,
           true, 'INFO', now(), now()
        WHERE NOT EXISTS (SELECT 1 FROM nemo_mqtt_mqttconfiguration WHERE enabled)
        ON CONFLICT DO NOTHING""", (host, port))
    inserted = cur.rowcount
    cur.execute("SELECT id, broker_host, broker_port FROM nemo_mqtt_mqttconfiguration WHERE enabled")
    row = cur.fetchone()
conn.close()
if row is None:
    sys.exit("plugin2/run.sh: could not insert an enabled nemo_mqtt_mqttconfiguration row "
             "(a disabled row named 'Default MQTT Configuration' exists?)")
if (row[1], row[2]) != (host, port):
    print(f"plugin2/run.sh: the enabled nemo_mqtt_mqttconfiguration row (id {row[0]}) points at "
          f"{row[1]}:{row[2]}, not {host}:{port}; not changing it", file=sys.stderr)
    sys.exit(2)
if inserted:
    print(f"plugin2/run.sh: inserted enabled nemo_mqtt_mqttconfiguration id {row[0]} -> {host}:{port}",
          file=sys.stderr)
PY

  exec "$VENV/bin/python" -m NEMO_mqtt_bridge.postgres_mqtt_bridge
}

case "${1:-}" in
  setup) shift; setup "$@" ;;
  bridge) shift; bridge "$@" ;;
  *) die "usage: run.sh setup | run.sh bridge <postgres_url> <broker_host> <broker_port>" ;;
esac
