# Shared steps of scripts/run.sh and scripts/test.sh: a virtualenv, system packages, Redis.
# Sourced, not run. Each step is idempotent: it does nothing when its work is already done.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
RUN_DIR="$ROOT/.run"
mkdir -p "$RUN_DIR"

say() { printf '==> %s\n' "$*" >&2; }

is_root() { [ "$(id -u)" = 0 ]; }

APT_UPDATED=""
apt_install() {
    # apt_install PKG...: install the Debian packages that are missing, when we are root.
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if ! is_root || ! command -v apt-get >/dev/null; then
        say "missing system packages: ${missing[*]} -- install them with: sudo apt-get install ${missing[*]}"
        return 1
    fi
    if [ -z "$APT_UPDATED" ]; then
        say "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        APT_UPDATED=1
    fi
    say "apt-get install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

ensure_python_env() {
    # ensure_python_env [EXTRA]: a venv with the project installed (with the [EXTRA] dependencies).
    local extra="${1:-}" spec="$ROOT"
    [ -n "$extra" ] && spec="$ROOT[$extra]"
    local python="${PYTHON:-python3}"
    if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        say "Python 3.11 or newer is needed as '$python' (set PYTHON=...)"; return 1
    fi
    if [ ! -x "$VENV/bin/python" ]; then
        if ! "$python" -m venv "$VENV" 2>/dev/null; then
            rm -rf "$VENV"
            local ver; ver=$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
            apt_install "python$ver-venv" || apt_install python3-venv || return 1
            "$python" -m venv "$VENV"
        fi
    fi
    local stamp="$VENV/.installed-$extra" digest
    digest=$(cat "$ROOT/pyproject.toml" | sha256sum | cut -c1-16)
    if [ "$(cat "$stamp" 2>/dev/null)" != "$digest" ]; then
        say "installing Python packages into $VENV"
        "$VENV/bin/pip" install -q --upgrade pip >/dev/null 2>&1 || true
        "$VENV/bin/pip" install -q -e "$spec" 2>&1 | grep -v -E '^(WARNING: Location|\s*$)' >&2 || true
        "$VENV/bin/python" -c 'import flask, flask_session, peewee, rq, rq_scheduler, boto3' || return 1
        echo "$digest" > "$stamp"
    fi
    export PATH="$VENV/bin:$PATH"
}

redis_answers() {
    "$VENV/bin/python" - "$1" <<'PY' 2>/dev/null
import sys, redis
redis.Redis.from_url(sys.argv[1], socket_connect_timeout=1).ping()
PY
}

ensure_redis() {
    # Use REDIS_URL (or the default local Redis) when it answers; else start a private redis-server.
    local url="${REDIS_URL:-redis://127.0.0.1:6379/0}"
    if redis_answers "$url"; then
        export REDIS_URL="$url"; return 0
    fi
    local port="${PRIVATE_REDIS_PORT:-6390}"
    local private="redis://127.0.0.1:$port/0"
    if redis_answers "$private"; then
        export REDIS_URL="$private"; return 0
    fi
    if ! command -v redis-server >/dev/null; then
        apt_install redis-server || { say "Redis is needed: install it (sudo apt-get install redis-server) or set REDIS_URL"; return 1; }
    fi
    say "starting a private redis-server on 127.0.0.1:$port (data in $RUN_DIR)"
    redis-server --port "$port" --bind 127.0.0.1 --daemonize yes --dir "$RUN_DIR" \
        --save 60 1 --appendonly no --pidfile "$RUN_DIR/redis.pid" --logfile "$RUN_DIR/redis.log"
    for _ in $(seq 50); do redis_answers "$private" && break; sleep 0.1; done
    redis_answers "$private" || { say "redis-server did not start; see $RUN_DIR/redis.log"; return 1; }
    export REDIS_URL="$private"
}

ensure_test_database() {
    # The PostgreSQL tests use TEST_DATABASE_URL. When it is unset and a local server answers
    # (127.0.0.1:5432, user postgres, trust auth), create a throwaway database for this run and
    # drop it when the calling script exits. Without either, the PostgreSQL tests are skipped.
    [ -n "${TEST_DATABASE_URL:-}" ] && return 0
    local server="postgresql://postgres@127.0.0.1:5432" name="bannerservice_run_$$_$RANDOM"
    "$VENV/bin/python" - "$server/postgres" "$name" <<'PY' 2>/dev/null || return 0
import sys, psycopg2
conn = psycopg2.connect(sys.argv[1], connect_timeout=2)
conn.autocommit = True
conn.cursor().execute(f'CREATE DATABASE "{sys.argv[2]}"')
PY
    export TEST_DATABASE_URL="$server/$name"
    TEST_DATABASE_DROP="$name"
    trap drop_test_database EXIT
}

drop_test_database() {
    [ -n "${TEST_DATABASE_DROP:-}" ] || return 0
    "$VENV/bin/python" - "postgresql://postgres@127.0.0.1:5432/postgres" "$TEST_DATABASE_DROP" <<'PY' || say "could not drop the test database $TEST_DATABASE_DROP"
import sys, psycopg2
conn = psycopg2.connect(sys.argv[1], connect_timeout=5)
conn.autocommit = True
conn.cursor().execute(f'DROP DATABASE IF EXISTS "{sys.argv[2]}" WITH (FORCE)')
PY
}
