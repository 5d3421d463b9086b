#!/usr/bin/env bash
# Mutation testing with mutmut: small changes to selection.py, rotation.py, jobs/parsing.py and
# jobs/store.py, each run against the tests that reach it; a change no test notices "survives".
# Configuration: [tool.mutmut] in pyproject.toml. Writes the per-module table (mutants, killed,
# survived, the command, the date and the wall time) into docs/testing.md.
#
# Usage: scripts/mutation.sh [MUTANT_PATTERN...]   e.g. scripts/mutation.sh 'selection*' 'rotation*'
#   (default: every mutant). mutmut keeps its results in mutants/ and a later run re-tests only
#   mutants of functions that changed since; MUTATION_FRESH=1 starts from scratch.
#   MUTATION_CHILDREN (default: the number of cores) mutants run at once.
# It needs no terminal: progress goes to .run/mutation.log, so it can run in the background:
#   nohup bash scripts/mutation.sh > /dev/null 2>&1 &     then: tail -f .run/mutation.log
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

ensure_python_env test
ensure_redis
ensure_test_database

LOG="$RUN_DIR/mutation.log"
CHILDREN="${MUTATION_CHILDREN:-$(nproc)}"
COMMAND="scripts/mutation.sh${*:+ $*}"
[ "${MUTATION_FRESH:-0}" = 1 ] && rm -rf mutants
say "mutmut run ($CHILDREN at once); progress in $LOG"
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
START=$(date +%s)
set +e
"$VENV/bin/mutmut" run --max-children "$CHILDREN" "$@" > "$LOG" 2>&1
rc=$?
set -e
SECONDS_TAKEN=$(( $(date +%s) - START ))
if [ "$rc" -ne 0 ]; then
    say "mutmut run failed (exit $rc); see $LOG"
    exit "$rc"
fi
"$VENV/bin/mutmut" results --all true > "$RUN_DIR/mutation-results.txt" 2>/dev/null
"$VENV/bin/python" scripts/mutation_report.py "$RUN_DIR/mutation-results.txt" docs/testing.md \
    --command "$COMMAND" --seconds "$SECONDS_TAKEN" --load "$LOAD_BEFORE / $(cut -d' ' -f1-3 /proc/loadavg)" \
    --children "$CHILDREN"
