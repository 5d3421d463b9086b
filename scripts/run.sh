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
# A namespace of this checkout's own (keys, queue, schedule ids) in what may be a shared Redis, removed
# on exit: a deployment or another checkout on the same Redis never runs or inherits our schedules.
NAMESPACE="bannerservice-quickstart-$(printf '%s' "$ROOT" | sha256sum | cut -c1-8)"
CLEAN_KEYS=()
if [ -z "${REDIS_PREFIX:-}" ]; then export REDIS_PREFIX="$NAMESPACE:"; CLEAN_KEYS=(--keys); fi
export QUEUE_NAME="${QUEUE_NAME:-$NAMESPACE}"

pids=()
cleanup() {
    set +e
    trap - EXIT INT TERM
    [ ${#pids[@]} -gt 0 ] && kill "${pids[@]}" 2>/dev/null
    wait 2>/dev/null
    # After the scheduler has stopped: a running one would register the schedules again.
    python scripts/quickstart_cleanup.py "${CLEAN_KEYS[@]}" || say "could not clean up Redis at $REDIS_URL"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

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

# Each background process in a process group of its own (job control): Ctrl-C reaches this script
# alone, and cleanup's one SIGTERM is each process's warm shutdown (a second signal is a cold one,
# which leaves the worker's and the scheduler's registrations in Redis).
set -m
rq worker --url "$REDIS_URL" "$QUEUE_NAME" > "$RUN_DIR/worker.log" 2>&1 & pids+=($!)
# Our scheduler, not plain rqscheduler: it registers the schedules again when Redis lost them.
flask --app webapp scheduler --interval 10 > "$RUN_DIR/scheduler.log" 2>&1 & pids+=($!)
say "worker and scheduler logs: $RUN_DIR/worker.log, $RUN_DIR/scheduler.log"
say "serving on http://127.0.0.1:$PORT  (try http://127.0.0.1:$PORT/campaigns/1)"
python -m webapp.serve --bind "127.0.0.1:$PORT" &
pids+=($!)
wait "${pids[-1]}"
