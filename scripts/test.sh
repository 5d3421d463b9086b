#!/usr/bin/env bash
# Runs the whole test suite from a fresh clone: venv, system packages, Redis, then pytest.
# Extra arguments go to pytest (e.g. scripts/test.sh -k rotation).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

ensure_python_env test
ensure_redis
# The browser tests drive Debian's Chromium (the browser Playwright downloads does not run here).
apt_install chromium || say "no Chromium: the browser tests fail in CI (CI=true) and are skipped elsewhere"
# The browser tests scan every dashboard page with axe-core. npm installs it into a cache outside the
# repository: a pinned version, and no 500 KB minified file in git to review or keep up to date.
AXE_VERSION=4.14.1
AXE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/bannerservice/axe-core-$AXE_VERSION"
if [ ! -f "$AXE_DIR/node_modules/axe-core/axe.min.js" ]; then
    command -v npm >/dev/null || apt_install npm || true
    if command -v npm >/dev/null; then
        say "npm install axe-core@$AXE_VERSION into $AXE_DIR"
        npm install --silent --no-audit --no-fund --prefix "$AXE_DIR" "axe-core@$AXE_VERSION" >&2 || true
    fi
fi
export AXE_JS="$AXE_DIR/node_modules/axe-core/axe.min.js"
[ -f "$AXE_JS" ] || say "no axe-core: the accessibility scans fail in CI (CI=true) and are skipped elsewhere"
# tests/test_stack.py runs the real nginx in front of the web process (granian).
apt_install nginx || say "no nginx: the stack tests fail in CI (CI=true) and are skipped elsewhere"
# The fault tests and tests/test_quickstart.py start redis-servers of their own.
apt_install redis-server || say "no redis-server: the tests that start a Redis of their own cannot run"
# tests/test_frozen_stores.py freezes a PostgreSQL cluster of its own (initdb, run as the postgres user).
apt_install postgresql || say "no PostgreSQL server programs: the frozen-database tests fail in CI (CI=true) and are skipped elsewhere"
# The embed browser tests make a throwaway CA and certificates with the openssl CLI.
apt_install openssl || say "no openssl: the embed browser tests fail in CI (CI=true) and are skipped elsewhere"

# PostgreSQL is optional: TEST_DATABASE_URL, or a throwaway database on a local server, or none.
ensure_test_database
say "REDIS_URL=$REDIS_URL TEST_DATABASE_URL=${TEST_DATABASE_URL:-<none>}"

# --- The compose end-to-end test (tests/test_compose_e2e.py, marker `compose`) -----------------------
# It needs a Docker engine with Compose v2 and the stand-in images: scripts/docker-standins.sh sets
# them up (Debian, root; a running engine and built images are reused). Skipped, with the reason, when
# that cannot be done, when COMPOSE_E2E=0, or when the pytest arguments select other test files only.
wants_compose_e2e() {
    local arg paths=0
    for arg in "$@"; do
        [[ "$arg" == *compose* ]] && return 0
        [[ "$arg" != -* && -e "${arg%%::*}" ]] && paths=1
    done
    [ "$paths" = 0 ]
}
if [ -n "${COMPOSE_STANDINS_ENV:-}${COMPOSE_E2E_OFFICIAL:-}" ]; then
    :  # the caller chose the images
elif [ "${COMPOSE_E2E:-1}" = 0 ]; then
    export COMPOSE_E2E_SKIP="COMPOSE_E2E=0: the compose test was turned off"
elif ! wants_compose_e2e "$@"; then
    export COMPOSE_E2E_SKIP="not selected: scripts/test.sh sets up Docker only for the whole suite or a compose test"
elif apt_install wrk && bash scripts/docker-standins.sh "$RUN_DIR/compose-standins.env"; then
    export COMPOSE_STANDINS_ENV="$RUN_DIR/compose-standins.env"
else
    export COMPOSE_E2E_SKIP="no Docker engine with Compose v2 here, and none could be set up (needs Debian and root): see the messages above"
    say "$COMPOSE_E2E_SKIP"
fi
# --- end of the compose block ---------------------------------------------------------------------------

set +e
"$VENV/bin/python" -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    say "pytest collected no tests: that is a failure"
    exit 1
fi
exit "$rc"
