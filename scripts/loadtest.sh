#!/usr/bin/env bash
# Load test of the production stack on loopback: nginx -> the web process (granian) -> Redis, on the demo data.
# Drives /campaigns/<id> with wrk (returning visitors, own cookies, all campaigns), then /ping on the
# same stack, then the embeds against the page in interleaved rounds (/campaigns/<id>, /embed/<id> with the
# cookie, /api/decision with each visitor's vid, in a rotating order; LOADTEST_EMBED_ROUNDS rounds of
# DURATION/2 seconds per run), and writes the "## Load test" section of docs/performance.md.
#
# Usage: scripts/loadtest.sh [DURATION_SECONDS] [CONNECTIONS]   (defaults 30 and 64)
# Environment: WRK_THREADS (= CONNECTIONS: one connection per wrk thread, so one visitor per
#   connection; fewer threads share their visitors among their connections), WEB_WORKERS and WEB_THREADS (webapp/serve.py's defaults), NGINX_WORKERS (auto),
#   LOADTEST_DATABASE_URL (default: SQLite in the run folder), LOADTEST_PORT (8089),
#   LOADTEST_REDIS_PORT (6392), LOADTEST_REDIS=unix (app to Redis over a unix socket; default tcp),
#   LOADTEST_QUIET_WAIT (120: seconds to wait for other work to calm down), LOADTEST_EMBED_ROUNDS (10),
#   LOADTEST_WRITE=0 to leave docs/performance.md alone,
#   LOADTEST_SOURCE (a source directory to load instead of the demo data), LOADTEST_PAGE_ONLY=1 (only
#   the page run: no /ping or events-off runs, no report; scripts/bench_scale.py reads the wrk files),
#   LOADTEST_DURING (page-only: a command run in the background during a second page run).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

DURATION="${1:-30}"
CONNECTIONS="${2:-64}"
# wrk does not tell a script which connection a request goes out on; a thread with one connection
# sends that connection's requests, so one thread per connection gives each connection its own visitor.
THREADS="${WRK_THREADS:-$CONNECTIONS}"
PORT="${LOADTEST_PORT:-8089}"
REDIS_PORT="${LOADTEST_REDIS_PORT:-6392}"
WORK="$RUN_DIR/loadtest"
COMMAND="scripts/loadtest.sh${*:+ $*}"

ensure_python_env
apt_install nginx wrk redis-server
PY="$VENV/bin/python"

exec 9> "$RUN_DIR/loadtest.lock"
flock -n 9 || { say "another load test is running (lock $RUN_DIR/loadtest.lock)"; exit 1; }
rm -rf "$WORK"
mkdir -p "$WORK/instance" "$WORK/nginx"
chmod 755 "$WORK" "$WORK/instance"

pids=()
cleanup() {
    [ -f "$WORK/nginx/nginx.pid" ] && kill "$(cat "$WORK/nginx/nginx.pid")" 2>/dev/null || true
    [ -f "$WORK/web.pid" ] && kill "$(cat "$WORK/web.pid")" 2>/dev/null || true
    [ -f "$WORK/redis.pid" ] && kill "$(cat "$WORK/redis.pid")" 2>/dev/null || true
    wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

# A Redis of its own, so its memory and command counts are the load test's alone.
say "starting redis-server on 127.0.0.1:$REDIS_PORT"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --daemonize yes --dir "$WORK" --save "" --appendonly no \
    --unixsocket "$WORK/redis.sock" --unixsocketperm 700 --pidfile "$WORK/redis.pid" --logfile "$WORK/redis.log"
# LOADTEST_REDIS=unix: the app reaches Redis over its unix socket, as when Redis runs on the web host.
if [ "${LOADTEST_REDIS:-tcp}" = unix ]; then
    export REDIS_URL="unix://$WORK/redis.sock?db=0"
    REDIS_TRANSPORT="unix socket"
else
    export REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
    REDIS_TRANSPORT="TCP 127.0.0.1"
fi
for _ in $(seq 50); do redis_answers "$REDIS_URL" && break; sleep 0.1; done

export INSTANCE_DIR="$WORK/instance"
export DATABASE_URL="${LOADTEST_DATABASE_URL:-sqlite:///$WORK/instance/bannerservice.db}"
export IMAGE_DIR="$WORK/instance/images"
export LOG_FILE="$WORK/bannerservice.log"
export SECRET_KEY="loadtest-$(date +%s)"
export REDIS_PREFIX="bannerservice:"
export SESSION_LIFETIME_MINUTES="${SESSION_LIFETIME_MINUTES:-30}"
if [[ "$DATABASE_URL" == postgres* ]]; then
    "$PY" -c 'import sys; from models import ALL_MODELS, db, init_db; init_db(sys.argv[1]); db.drop_tables(ALL_MODELS, cascade=True)' "$DATABASE_URL"
fi

say "demo data and ingest ($DATABASE_URL)"
SOURCE="${LOADTEST_SOURCE:-$WORK/demo}"
[ -n "${LOADTEST_SOURCE:-}" ] || flask --app webapp demo-data "$WORK/demo" > "$WORK/demo.log"
flask --app webapp ingest "$SOURCE" > "$WORK/ingest.log" 2>&1
"$PY" bench/loadtest.py redis "$REDIS_URL" "$REDIS_PREFIX" > "$WORK/redis-empty.json"

start_web() {
    # start_web EVENTS_ENABLED: the web process (webapp/serve.py), with live-event recording on (1) or off (0).
    say "starting the web process on $WORK/web.sock (EVENTS_ENABLED=$1)"
    rm -f "$WORK/web.sock"
    EVENTS_ENABLED="$1" "$PY" -m webapp.serve --bind "unix:$WORK/web.sock" --pid "$WORK/web.pid" > "$WORK/web.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do [ -S "$WORK/web.sock" ] && break; sleep 0.1; done
}
server_option() {  # server_option NAME: a setting of the web process as webapp/serve.py reads it from the environment
    "$PY" -c 'import sys; from webapp.serve import server_options; print(server_options()[sys.argv[1]])' "$1"
}
stop_web() {
    local pid; pid="$(cat "$WORK/web.pid")"
    kill "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
}
start_web 1

say "starting nginx on 127.0.0.1:$PORT"
LISTEN="127.0.0.1:$PORT" APP_UPSTREAM="unix:$WORK/web.sock" IMAGE_DIR="$IMAGE_DIR" RUN_DIR="$WORK/nginx" \
    LOG_DIR="$WORK/nginx" NGINX_WORKERS="${NGINX_WORKERS:-auto}" \
    "$PY" scripts/render_nginx.py "$WORK/nginx/nginx.conf" 2> "$WORK/nginx/values.txt"
nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf"

BASE="http://127.0.0.1:$PORT"
for _ in $(seq 100); do
    curl -fs -o /dev/null "$BASE/healthz" && break
    sleep 0.2
done
curl -fs "$BASE/healthz" > "$WORK/healthz.json" || { say "the stack did not become healthy; see $WORK"; exit 1; }

CAMPAIGNS="$("$PY" bench/loadtest.py campaigns)"
"$PY" bench/loadtest.py visitors "$BASE" "$CONNECTIONS" "$WORK/visitors.txt"
export VISITORS_FILE="$WORK/visitors.txt" CAMPAIGNS THREADS

WRK=(wrk -t "$THREADS" -c "$CONNECTIONS" --latency --timeout 5s -s bench/visitors.lua)
say "warming up (10 s, not counted)"
"${WRK[@]}" -d 10s "$BASE/" > "$WORK/wrk-warmup.txt"

# The machine may be shared (CI, other test runs): wait up to LOADTEST_QUIET_WAIT seconds for the
# CPUs to be less than 20% busy before measuring, and record how busy they were.
deadline=$((SECONDS + ${LOADTEST_QUIET_WAIT:-120}))
while BUSY="$("$PY" bench/loadtest.py busy)" && [ "$BUSY" -ge 20 ] && [ "$SECONDS" -lt "$deadline" ]; do
    say "CPUs ${BUSY}% busy with other work; waiting for a quieter moment"
    sleep 3
done

cpu() { "$PY" bench/loadtest.py cpu nginx="$WORK/nginx/nginx.pid" app="$WORK/web.pid" redis="$WORK/redis.pid"; }
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
"$PY" bench/loadtest.py redis "$REDIS_URL" "$REDIS_PREFIX" > "$WORK/redis-before.json"
cpu > "$WORK/cpu-0.json"
say "/campaigns/<id>: $CONNECTIONS connections, $DURATION s"
"${WRK[@]}" -d "${DURATION}s" "$BASE/" | tee "$WORK/wrk-campaign.txt"
cpu > "$WORK/cpu-1.json"
"$PY" bench/loadtest.py redis "$REDIS_URL" "$REDIS_PREFIX" > "$WORK/redis-after.json"
if [ "${LOADTEST_PAGE_ONLY:-0}" = 1 ]; then
    if [ -n "${LOADTEST_DURING:-}" ]; then
        say "/campaigns/<id> while running: $LOADTEST_DURING"
        bash -c "$LOADTEST_DURING" > "$WORK/during.log" 2>&1 &
        during=$!
        "${WRK[@]}" -d "${DURATION}s" "$BASE/" | tee "$WORK/wrk-campaign-during.txt"
        wait "$during" || say "the command run during the page run failed; see $WORK/during.log"
    fi
    exit 0
fi
say "/ping (the trivial baseline): $CONNECTIONS connections, $DURATION s"
LOADTEST_PATH=/ping "${WRK[@]}" -d "${DURATION}s" "$BASE/" | tee "$WORK/wrk-baseline.txt"
cpu > "$WORK/cpu-2.json"
# The no-state baseline (bench/baseline_app.py): our page's bytes, a random banner, nobody remembered, no framework;
# served by granian with the web process's workers and threads, behind the same nginx.
stop_web
say "starting the no-state baseline app (bench/baseline_app.py) on $WORK/web.sock"
rm -f "$WORK/web.sock"
"$VENV/bin/granian" --interface wsgi --uds "$WORK/web.sock" --uds-permissions 666 --workers "$(server_option workers)" \
    --blocking-threads "$(server_option blocking_threads)" --pid-file "$WORK/web.pid" --no-log \
    'bench.baseline_app:application' > "$WORK/baseline.log" 2>&1 &
for _ in $(seq 100); do [ -S "$WORK/web.sock" ] && break; sleep 0.1; done
"${WRK[@]}" -d 5s "$BASE/" > /dev/null
cpu > "$WORK/cpu-baseline-app-0.json"
say "/campaigns/<id> of the no-state baseline: $CONNECTIONS connections, $DURATION s"
"${WRK[@]}" -d "${DURATION}s" "$BASE/" | tee "$WORK/wrk-baseline-app.txt"
cpu > "$WORK/cpu-baseline-app-1.json"
# The cost of recording live events: the page with EVENTS_ENABLED=0, then with it on again, so
# that a drift of the machine's speed during the runs does not pass for that cost.
for phase in noevents:0 events2:1; do
    stop_web
    start_web "${phase#*:}"
    curl -fs -o /dev/null "$BASE/healthz"
    "${WRK[@]}" -d 5s "$BASE/" > /dev/null
    cpu > "$WORK/cpu-${phase%%:*}-0.json"
    say "/campaigns/<id> with EVENTS_ENABLED=${phase#*:}: $CONNECTIONS connections, $DURATION s"
    "${WRK[@]}" -d "${DURATION}s" "$BASE/" | tee "$WORK/wrk-campaign-${phase%%:*}.txt"
    cpu > "$WORK/cpu-${phase%%:*}-1.json"
done
# The embeds against the page, as publishers' pages ask for them: the iframe document (the visitor's cookie)
# and the JSON decision of one slot (the visitor's vid as a parameter, as the JS tag sends it). Each round
# runs the page, the frame and the decision back to back, in an order that rotates from round to round, so
# each ratio compares runs seconds apart and a drift of the machine's speed does not pass for a difference.
ROUNDS="${LOADTEST_EMBED_ROUNDS:-10}"
ROUND_SECONDS=$(( DURATION / 2 > 5 ? DURATION / 2 : 5 ))
modes=(page embed decision)
for round in $(seq "$ROUNDS"); do
    for i in 0 1 2; do
        mode="${modes[$(( (i + round - 1) % 3 ))]}"
        say "round $round/$ROUNDS: $mode, $CONNECTIONS connections, $ROUND_SECONDS s"
        cpu > "$WORK/cpu-round$round-$mode-0.json"
        LOADTEST_MODE="$mode" "${WRK[@]}" -d "${ROUND_SECONDS}s" "$BASE/" > "$WORK/wrk-round$round-$mode.txt"
        cpu > "$WORK/cpu-round$round-$mode-1.json"
        grep RESULT "$WORK/wrk-round$round-$mode.txt" >&2 || true
    done
done
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"

export LT_WHEN="$(date -u '+%Y-%m-%d %H:%M UTC')" LT_CORES="$(nproc)" LT_COMMAND="$COMMAND"
export LT_CPU_MODEL="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs || echo unknown)"
export LT_MEMORY="$(free -g | awk '/Mem:/ {print $2 " GiB"}')"
export LT_LOAD_BEFORE="$LOAD_BEFORE" LT_LOAD_AFTER="$LOAD_AFTER" LT_BUSY_BEFORE="$BUSY"
export LT_NGINX_VERSION="$(nginx -v 2>&1 | cut -d/ -f2)" LT_NGINX_WORKERS="$(pgrep -c -P "$(cat "$WORK/nginx/nginx.pid")")"
export LT_WEB_WORKERS="$(pgrep -c -P "$(cat "$WORK/web.pid")")" LT_WEB_THREADS="$(server_option blocking_threads)"
export LT_REDIS_VERSION="$(redis-server --version | sed -E 's/.*v=([0-9.]+).*/\1/')" LT_REDIS_TRANSPORT="$REDIS_TRANSPORT"
export LT_DATABASE="${DATABASE_URL%%:*}" LT_CAMPAIGNS="$CAMPAIGNS" LT_THREADS="$THREADS"
export LT_CONNECTIONS="$CONNECTIONS" LT_DURATION="$DURATION" LT_ROUNDS="$ROUNDS" LT_ROUND_SECONDS="$ROUND_SECONDS" LT_SESSION_MINUTES="$SESSION_LIFETIME_MINUTES"
if [ "${LOADTEST_WRITE:-1}" = 1 ]; then
    "$PY" bench/loadtest.py report "$WORK" docs/performance.md
    say "wrote the Load test section of docs/performance.md"
else
    "$PY" bench/loadtest.py report "$WORK" "$WORK/performance.md"
fi
