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
# tests/test_stack.py runs the real nginx in front of gunicorn.
apt_install nginx || say "no nginx: the stack tests fail in CI (CI=true) and are skipped elsewhere"

# PostgreSQL is optional: TEST_DATABASE_URL, or a throwaway database on a local server, or none.
ensure_test_database
say "REDIS_URL=$REDIS_URL TEST_DATABASE_URL=${TEST_DATABASE_URL:-<none>}"

set +e
"$VENV/bin/python" -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    say "pytest collected no tests: that is a failure"
    exit 1
fi
exit "$rc"
