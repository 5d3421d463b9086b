#!/usr/bin/env bash
# Mutation testing with mutmut: small changes to selection.py, rotation.py, jobs/parsing.py and
# jobs/store.py, each run against the tests that reach the changed function; a change no test
# notices "survives". Writes the per-module table (mutants, killed, survived, the command, the date
# and the wall time) and every survivor into docs/testing.md.
#
# Two passes, each in a copy of the worktree under .run/mutation/<pass> with its own [tool.mutmut]:
#   pure   selection.py, rotation.py, jobs/parsing.py against their own pure tests;
#   store  jobs/store.py against its own tests and the ingest tests (directory and S3, SQLite and PostgreSQL).
# The pure modules are reached by every ingest test too; letting those count would make each
# surviving mutant of the parser re-run the whole ingest suite, for nothing the pure tests miss.
#
# Usage: scripts/mutation.sh [pure|store]...   (default: both)
#   mutmut keeps each pass's results in its mutants/ folder and a later run re-tests only mutants of
#   functions that changed since; MUTATION_FRESH=1 starts from scratch.
#   MUTATION_CHILDREN (default: the number of cores) mutants run at once.
# It needs no terminal: progress goes to .run/mutation/<pass>.log, so it can run in the background:
#   nohup bash scripts/mutation.sh > /dev/null 2>&1 &     then: tail -f .run/mutation/*.log
# To look at a mutant: cd .run/mutation/pure && ../../../.venv/bin/mutmut show NAME (or: browse).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

ensure_python_env test
ensure_redis
ensure_test_database

pass_config() {
    case "$1" in
        pure) cat <<'TOML'
only_mutate = ["selection.py", "rotation.py", "jobs/parsing.py"]
pytest_add_cli_args_test_selection = ["tests/test_selection.py", "tests/test_rotation.py", "tests/test_parsing.py", "tests/test_parsing_reasons.py"]
TOML
        ;;
        store) cat <<'TOML'
only_mutate = ["jobs/store.py"]
# The 50 MB memory test measures memory, which no mutant of the store changes, and the demo-data
# test re-proves the rules over a generated source; together they would take longer than all the others.
pytest_add_cli_args_test_selection = ["tests/test_store.py", "tests/test_ingest.py", "tests/test_ingest_s3.py", "-k", "not 50_megabyte and not demo_data"]
TOML
        ;;
        *) say "unknown pass '$1' (pure or store)"; return 1 ;;
    esac
}

PASSES=("$@")
[ ${#PASSES[@]} -eq 0 ] && PASSES=(pure store)
CHILDREN="${MUTATION_CHILDREN:-$(nproc)}"
COMMAND="scripts/mutation.sh${*:+ $*}"
[ "${MUTATION_FRESH:-0}" = 1 ] && COMMAND="MUTATION_FRESH=1 $COMMAND"
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
START=$(date +%s)
for name in "${PASSES[@]}"; do
    dir="$RUN_DIR/mutation/$name"
    mkdir -p "$dir"
    [ "${MUTATION_FRESH:-0}" = 1 ] && rm -rf "$dir/mutants"
    # A fresh copy of the code and tests, keeping the pass's mutants/ (its results) from last time.
    find "$dir" -mindepth 1 -maxdepth 1 ! -name mutants -exec rm -rf {} +
    tar -C "$ROOT" --exclude=./.venv --exclude=./.run --exclude=./.git --exclude=./mutants \
        --exclude='__pycache__' --exclude=./instance -cf - . | tar -C "$dir" -xf -
    {
        echo
        echo "[tool.mutmut]"
        echo 'source_paths = ["config.py", "models.py", "selection.py", "rotation.py", "jobs/", "live/", "webapp/"]'
        echo 'pytest_add_cli_args = ["-q", "-p", "no:cacheprovider"]'
        pass_config "$name"
    } >> "$dir/pyproject.toml"
    say "mutation pass '$name' ($CHILDREN at once); progress in $RUN_DIR/mutation/$name.log"
    set +e
    (cd "$dir" && "$VENV/bin/mutmut" run --max-children "$CHILDREN" > "$RUN_DIR/mutation/$name.log" 2>&1)
    rc=$?
    set -e
    if [ "$rc" -ne 0 ]; then
        say "mutmut run of pass '$name' failed (exit $rc); see $RUN_DIR/mutation/$name.log"
        exit "$rc"
    fi
done
SECONDS_TAKEN=$(( $(date +%s) - START ))
dirs=()
for name in pure store; do
    [ -d "$RUN_DIR/mutation/$name/mutants" ] && dirs+=("$RUN_DIR/mutation/$name")
done
"$VENV/bin/python" scripts/mutation_report.py docs/testing.md "${dirs[@]}" \
    --command "$COMMAND" --seconds "$SECONDS_TAKEN" --load "$LOAD_BEFORE / $(cut -d' ' -f1-3 /proc/loadavg)" \
    --children "$CHILDREN"
