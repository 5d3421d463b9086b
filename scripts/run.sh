#!/usr/bin/env bash
# Runs BannerService on its embedded defaults: SQLite under instance/, a local Redis, the demo
# data, a web server on http://127.0.0.1:8000, an RQ worker and the scheduler. Ctrl-C stops all.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

ensure_python_env
ensure_redis
export INGEST_SOURCE="${INGEST_SOURCE:-$ROOT/instance/demo}"
PORT="${PORT:-8000}"

if ! flask --app webapp status --has-data; then
    if [ ! -d "$INGEST_SOURCE" ] && [[ "$INGEST_SOURCE" != s3://* ]]; then
        say "generating demo data in $INGEST_SOURCE"
        flask --app webapp demo-data "$INGEST_SOURCE"
    fi
    say "loading $INGEST_SOURCE"
    flask --app webapp ingest "$INGEST_SOURCE" || true
fi
flask --app webapp bootstrap-admin 2>/dev/null || true
flask --app webapp schedule

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM
QUEUE="${QUEUE_NAME:-bannerservice}"
rq worker --url "$REDIS_URL" "$QUEUE" > "$RUN_DIR/worker.log" 2>&1 & pids+=($!)
# Our scheduler, not plain rqscheduler: it registers the schedules again when Redis lost them.
flask --app webapp scheduler --interval 10 > "$RUN_DIR/scheduler.log" 2>&1 & pids+=($!)
say "worker and scheduler logs: $RUN_DIR/worker.log, $RUN_DIR/scheduler.log"
say "serving on http://127.0.0.1:$PORT  (try http://127.0.0.1:$PORT/campaigns/1)"
gunicorn -c gunicorn.conf.py --bind "127.0.0.1:$PORT" &
pids+=($!)
wait "${pids[-1]}"
