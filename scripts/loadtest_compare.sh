#!/usr/bin/env bash
# The page's rate against another version, in one window: scripts/loadtest.sh's page run
# (LOADTEST_PAGE_ONLY=1) of REF's checkout and of this one, alternating (REF first), ROUNDS times each,
# each on a stack of its own; prints every run and the median of the per-round ratios (this / REF),
# and writes them to the "Against another version" section of docs/performance.md.
#
# Usage: scripts/loadtest_compare.sh REF [ROUNDS] [DURATION_SECONDS] [CONNECTIONS]   (defaults 3, 20 and 64)
# REF is checked out into .run/compare/<ref> with a venv of its own (its own dependencies).
# LOADTEST_WRITE=0 leaves docs/performance.md alone.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

REF="${1:?usage: scripts/loadtest_compare.sh REF [ROUNDS] [DURATION_SECONDS] [CONNECTIONS]}"
ROUNDS="${2:-3}"
DURATION="${3:-20}"
CONNECTIONS="${4:-64}"
SHA="$(git rev-parse --verify "$REF^{commit}")"
OTHER="$RUN_DIR/compare/${SHA:0:12}"
OUT="$RUN_DIR/compare/runs-${SHA:0:12}"

ensure_python_env
if [ ! -d "$OTHER" ]; then
    say "checking out $REF ($SHA) into $OTHER"
    mkdir -p "$RUN_DIR/compare"
    git worktree add --detach "$OTHER" "$SHA" >/dev/null
fi
rm -rf "$OUT"
mkdir -p "$OUT"

page_run() {  # page_run CHECKOUT VENV NAME: one page-only load test, its wrk result kept as NAME
    local checkout="$1" venv="$2" name="$3"
    say "round $name: $checkout"
    (cd "$checkout" && VENV="$venv" LOADTEST_PAGE_ONLY=1 LOADTEST_QUIET_WAIT=60 \
        bash scripts/loadtest.sh "$DURATION" "$CONNECTIONS" > "$OUT/$name.log" 2>&1) \
        || { say "the load test of $checkout failed: see $OUT/$name.log"; exit 1; }
    cp "$checkout/.run/loadtest/wrk-campaign.txt" "$OUT/$name.txt"
}

for round in $(seq "$ROUNDS"); do
    page_run "$OTHER" "$RUN_DIR/compare/venv-${SHA:0:12}" "ref-$round"
    page_run "$ROOT" "$VENV" "this-$round"
done

"$VENV/bin/python" bench/loadtest.py compare "$OUT" "$REF" "$SHA" "$(git rev-parse --short HEAD)" \
    "scripts/loadtest_compare.sh${*:+ $*}" "$DURATION" "$CONNECTIONS" \
    "$([ "${LOADTEST_WRITE:-1}" = 1 ] && echo docs/performance.md || echo "$OUT/performance.md")"
