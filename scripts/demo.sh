#!/usr/bin/env bash
# A local end-to-end demo of nemo-mqtt, on loopback only:
#   1. installs what is missing (scripts/setup.sh) and builds the programs;
#   2. starts a private redis-server and mosquitto on free non-default ports
#      (never 6379/1883; anything already running there is left alone);
#   3. starts the bridge and the monitor;
#   4. pushes the sample events of tests/fixtures/v1-queue-items.jsonl into
#      Redis the way the NEMO plugin does (LPUSH), plus one bad item;
#   5. shows them arriving in the monitor, the tool board, the dead letter and
#      the bridge's metrics;
#   6. stops everything it started, cleanly.
# Options: DEMO_PACE=0.05 (seconds between events), DEMO_KEEP=1 (leave the
# servers and bridge running at the end; the script prints how to stop them).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PACE=${DEMO_PACE:-0.05}

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

say "Installing what is missing and building (first build takes a few minutes)"
bash scripts/setup.sh
cargo build --quiet --locked --bins
BIN="$ROOT/target/debug"

DIR=$(mktemp -d "${TMPDIR:-/tmp}/nemo-demo.XXXXXX")
chmod 0777 "$DIR"   # mosquitto started as root may switch to its own user
PIDS=()
cleanup() {
    if [ "${DEMO_KEEP:-0}" = 1 ]; then
        echo "Left running (pids ${PIDS[*]}); stop with: kill ${PIDS[*]}; files in $DIR"
        return
    fi
    say "Stopping what the demo started"
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        kill -TERM "${PIDS[$i]}" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "${PIDS[$i]}" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "${PIDS[$i]}" 2>/dev/null || true
    done
    rm -rf "$DIR"
    echo "done."
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_port() {
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "nothing answers on port $1; see $DIR/*.log" >&2
    return 1
}

REDIS_PORT=$(free_port)
MQTT_PORT=$(free_port)
HTTP_PORT=$(free_port)

say "Starting redis-server on 127.0.0.1:$REDIS_PORT and mosquitto on 127.0.0.1:$MQTT_PORT"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$DIR" --save "" --appendonly no \
    --daemonize no >"$DIR/redis.log" 2>&1 &
PIDS+=($!)
cat >"$DIR/mosquitto.conf" <<EOF
listener $MQTT_PORT 127.0.0.1
allow_anonymous true
set_tcp_nodelay true
max_queued_messages 0
max_inflight_messages 0
persistence false
user root
EOF
"$(command -v mosquitto || echo /usr/sbin/mosquitto)" -c "$DIR/mosquitto.conf" >"$DIR/mosquitto.log" 2>&1 &
PIDS+=($!)
wait_port "$REDIS_PORT"
wait_port "$MQTT_PORT"

cat >"$DIR/bridge.toml" <<EOF
[redis]
url = "redis://127.0.0.1:$REDIS_PORT/1"
mode = "list"
key = "nemo_mqtt_events"

[mqtt]
url = "mqtt://127.0.0.1:$MQTT_PORT"
client_id = "nemo-demo-bridge"
qos = 1

[http]
listen = "127.0.0.1:$HTTP_PORT"
EOF

say "Starting the bridge (log: $DIR/bridge.log) and the monitor"
"$BIN/bridge" --config "$DIR/bridge.toml" >"$DIR/bridge.log" 2>&1 &
PIDS+=($!)
wait_port "$HTTP_PORT"
"$BIN/monitor" --config "$DIR/bridge.toml" --record "$DIR/recording.jsonl" &
PIDS+=($!)
# The tool board, built from the same stream, drawn to a file (shown at the end).
"$BIN/monitor" board --config "$DIR/bridge.toml" --no-color >"$DIR/board.txt" 2>/dev/null &
PIDS+=($!)
sleep 1

TOTAL=$(wc -l <tests/fixtures/v1-queue-items.jsonl)
say "Pushing $TOTAL sample events the way NEMO does (LPUSH nemo_mqtt_events), one every ${PACE}s"
while IFS= read -r line; do
    redis-cli -p "$REDIS_PORT" -n 1 LPUSH nemo_mqtt_events "$line" >/dev/null
    sleep "$PACE"
done <tests/fixtures/v1-queue-items.jsonl
redis-cli -p "$REDIS_PORT" -n 1 LPUSH nemo_mqtt_events '{"topic": "nemo/tools/+/enabled", "payload": "{}", "qos": 1}' >/dev/null

# Events only: the retained per-tool state documents (nemo/tools/{id}/state) are counted apart.
count_events() { grep '"topic":"nemo/\(tools\|areas\|reservations\|area_access\)' "$DIR/recording.jsonl" 2>/dev/null | grep -vc '/state"' || true; }
count_states() { grep -c '"topic":"nemo/tools/[^/"]*/state"' "$DIR/recording.jsonl" 2>/dev/null || true; }
for _ in $(seq 100); do
    [ "$(count_events)" -ge "$TOTAL" ] && break
    sleep 0.1
done

say "The tool board (monitor board)"
sleep 1.5
# Frames end with a line "---": print the last complete one.
awk '/^---$/ { last = frame; frame = ""; next } { frame = frame $0 "\n" } END { printf "%s", last }' "$DIR/board.txt"

say "Summary"
events=$(count_events)
echo "events pushed:              $TOTAL (+1 bad item)"
echo "events seen by the monitor: $events"
echo "tool state documents:       $(count_states) (retained, one per tool change)"
echo "left in the queue:          $(redis-cli -p "$REDIS_PORT" -n 1 LLEN nemo_mqtt_events)"
echo "in processing:              $(redis-cli -p "$REDIS_PORT" -n 1 LLEN '{nemo_mqtt_events}:processing')"
echo "dead letters:               $(redis-cli -p "$REDIS_PORT" -n 1 LLEN '{nemo_mqtt_events}:dead')"
echo "  $(redis-cli -p "$REDIS_PORT" -n 1 LINDEX '{nemo_mqtt_events}:dead' 0)"
echo "bridge metrics:"
{ exec 3<>"/dev/tcp/127.0.0.1/$HTTP_PORT" && printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3 && cat <&3; } 2>/dev/null \
    | grep -E '^nemo_bridge_(events|reconnects|lease)' | sed 's/^/  /' || true
if [ "$events" -lt "$TOTAL" ]; then
    echo "FAILED: the monitor saw $events of $TOTAL events; see $DIR/bridge.log" >&2
    DEMO_KEEP=1
    exit 1
fi
