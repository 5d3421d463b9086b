"""The mutation table of docs/testing.md from the mutmut passes' results (used by scripts/mutation.sh)."""

import argparse
import os
import platform
import re
import subprocess
import sys
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path

BEGIN, END = "<!-- mutation:begin -->", "<!-- mutation:end -->"
MODULES = {  # mutmut's module name: (file, goal in % killed)
    "selection": ("selection.py", 95),
    "rotation": ("rotation.py", 95),
    "jobs.parsing": ("jobs/parsing.py", 95),
    "jobs.store": ("jobs/store.py", 85),
}
# Reasons shared by several survivors.
LSTRIP_TAKES_A_SET = "lstrip() takes a set of characters: digits hold no X, so the same zeros go."
CODEC_CASE = "Codec names are case-insensitive: 'UTF-8' is 'utf-8'."
FOLDS_EARLY = "Folding the buffer one row before the chunk is full: it still never holds more than a chunk, and the counts are the same."
UNSIGNED_ARRAY = "An unsigned array: ids, units and nanos are never negative (parse_id and parse_revenue refuse a sign), so 'Q' holds the same bytes as 'q', and column() reads them as int64 either way."
NEXT_DEFAULT_UNUSED = "The default of next() is never used: the csv reader yields one row (maybe empty) for one line."
COPY_READ_SIZE = "How many bytes psycopg2 asks RowsAsCsv for per read (its default 8192, or 128 KiB instead of 64 KiB): copy_expert sends whatever each read returns and stops at the first empty one, so the same bytes reach COPY, in more or fewer calls."
NO_QUOTE_IN_NAMES = "No table or column name holds a double quote: there is nothing to escape either way."
# Why a surviving mutant is equivalent: no test can tell it from the real code. Keyed by mutant name;
# the numbers move when the code does, so a survivor without a line here is shown as unexplained.
EQUIVALENT = {
    "selection.x_draw_fill__mutmut_3": "With nothing missing, rng.sample(candidates, 0) returns [] without drawing, the same as the early return.",
    "rotation.x_next_banner__mutmut_5": "An empty string, like None, is no banner id: no permutation starts with it, so no new cycle is redrawn for it.",
    "rotation.x_next_banner__mutmut_16": "This code never stores position 0; a stored 0 whose last banner ends the cycle would go on at the cycle's first banner, which is not the last one either: still no repeat, still a permutation.",
    "jobs.parsing.x_parse_revenue__mutmut_30": LSTRIP_TAKES_A_SET,
    "jobs.parsing.x_parse_revenue__mutmut_39": LSTRIP_TAKES_A_SET,
    "jobs.parsing.x_parse_revenue__mutmut_38": "A run of digits is all zeros from the left exactly when it is from the right: the condition is the same.",
    "jobs.parsing.x_parse_revenue__mutmut_72": "quantize() uses only its argument's exponent, and 2 × 10^-n has the same exponent as 1 × 10^-n.",
    "jobs.parsing.x_parse_revenue__mutmut_44": "Not strictly equivalent: it differs only for a revenue with a 7-digit exponent offset by about a million written zeros (a line of about 1 MB); the code refuses such a value as out of range, the mutant reads it. Reported to the owner of jobs/parsing.py; no test pins either answer.",
    "jobs.parsing.x_parse_id__mutmut_19": "lstrip() takes a set of characters: the id is ASCII digits by then, so the same zeros go.",
    "jobs.parsing.x_quote__mutmut_1": "None is as false as False where `cut or ...` reads it.",
    "jobs.parsing.x_quote__mutmut_13": "Decoding more bytes changes nothing shown: `cut` already says whether bytes were dropped, the text is cut to `limit` characters afterwards, and 4 × limit bytes are at least `limit` characters, so a character split at the byte cut lands past them.",
    "jobs.parsing.x_quote__mutmut_15": CODEC_CASE,
    "jobs.parsing.x_parse_impressions__mutmut_8": FOLDS_EARLY,
    "jobs.parsing.x_parse_impressions__mutmut_62": FOLDS_EARLY,
    "jobs.parsing.x_parse_conversions__mutmut_95": "Iterating a Clicks yields its ids, and np.unique of them is its id column (already sorted and distinct): the same known ids, found more slowly.",
    "jobs.parsing.x_parse_clicks__mutmut_12": UNSIGNED_ARRAY,
    "jobs.parsing.x_parse_clicks__mutmut_15": UNSIGNED_ARRAY,
    "jobs.parsing.x_parse_clicks__mutmut_18": UNSIGNED_ARRAY,
    "jobs.parsing.x_parse_conversions__mutmut_12": UNSIGNED_ARRAY,
    "jobs.parsing.x_parse_conversions__mutmut_15": UNSIGNED_ARRAY,
    "jobs.parsing.x_parse_conversions__mutmut_18": UNSIGNED_ARRAY,
    "jobs.parsing.x_parse_conversions__mutmut_21": UNSIGNED_ARRAY,
    "jobs.parsing.x__fields__mutmut_12": CODEC_CASE,
    "jobs.parsing.x__data_lines__mutmut_34": "Codec names are case-insensitive: 'UTF-8-SIG' is 'utf-8-sig'.",
    "jobs.parsing.x__fields__mutmut_8": "Stripping all whitespace instead of the line end: every field is stripped of whitespace afterwards anyway.",
    "jobs.parsing.x__fields__mutmut_9": "Leaving the line end on: the last field is stripped of whitespace afterwards, and the csv module reads a trailing line end as the row's end.",
    "jobs.parsing.x__data_lines__mutmut_42": NEXT_DEFAULT_UNUSED,
    "jobs.parsing.x__data_lines__mutmut_44": NEXT_DEFAULT_UNUSED,
    "jobs.parsing.x__data_lines__mutmut_46": "None and () are both unequal to the expected header: the same refusal follows.",
    "jobs.store.x_insert__mutmut_16": COPY_READ_SIZE,
    "jobs.store.x_insert__mutmut_19": COPY_READ_SIZE,
    "jobs.store.x_insert__mutmut_20": COPY_READ_SIZE,
    "jobs.store.x_insert__mutmut_32": "execute_values' default page size (100) instead of 5,000 (the benchmark's path only): the same rows go in, in more round trips.",
    "jobs.store.x_quoted__mutmut_8": NO_QUOTE_IN_NAMES,
    "jobs.store.x_quoted__mutmut_9": NO_QUOTE_IN_NAMES,
    "jobs.store.x_loaded_hash__mutmut_5": "loaded_hash() is only asked about a file is_loaded() has just found in LoadedFile: there always is a row.",
}
STATUS = re.compile(r"^\s*(?P<name>\S+): (?P<status>.+)$")
MODULE = re.compile(r"^(?P<module>.+?)\.x[_ǁ]")
# mutmut's statuses of a mutant whose tests never ran; any other status but killed and timeout is not a kill.
NOT_RUN = ("not checked", "skipped", "check was interrupted by user")


def parse(results_text):
    """{module: Counter(status)} and {module: [survivor names]} from mutmut's result lines."""
    counts, survivors = defaultdict(Counter), defaultdict(list)
    for line in results_text.splitlines():
        match = STATUS.match(line)
        if not match:
            continue
        module = MODULE.match(match["name"])["module"]
        counts[module][match["status"]] += 1
        if match["status"] == "survived":
            survivors[module].append(match["name"])
    return counts, survivors


def mutmut(folder, *args):
    """The output of a mutmut command run in a pass's folder."""
    return subprocess.run([os.path.join(os.path.dirname(sys.executable), "mutmut"), *args],
                          cwd=folder, capture_output=True, text=True, check=True).stdout


def change_of(folder, name):
    """The mutant's changed line, as `old` → `new`, from `mutmut show`."""
    diff = mutmut(folder, "show", name)
    old = [line[1:].strip() for line in diff.splitlines() if line.startswith("-") and not line.startswith("---")]
    new = [line[1:].strip() for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")]
    return f"`{' '.join(old)}` → `{' '.join(new)}`".replace("|", "\\|")


def render(counts, survivors, changes, command, seconds, load, children):
    """The section of docs/testing.md: the run, the per-module table, every survivor with its change and why."""
    busy = float(load.split()[0]) >= 0.5  # the 1-minute load average before the run
    lines = [
        BEGIN,
        f"Last run: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, `{command}`, {seconds // 60} min {seconds % 60} s wall time, "
        f"{children} mutants at once on {os.cpu_count()} cores ({platform.processor() or platform.machine()}); "
        f"load average before / after: {load}" + (" (the machine was not idle when the run began)." if busy else "."),
        "",
        "| module | mutants | killed | survived | timeout | other | not run | killed % | goal |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for module, (path, goal) in MODULES.items():
        c = counts.get(module, Counter())
        total = sum(c.values())
        detected = c["killed"] + c["timeout"]
        not_run = sum(c[status] for status in NOT_RUN)
        checked = total - not_run
        other = checked - detected - c["survived"]
        rate = f"{100 * detected / checked:.1f}" if checked else "–"
        met = "met" if checked and 100 * detected / checked >= goal else "NOT met"
        lines.append(f"| {path} | {total} | {c['killed']} | {c['survived']} | {c['timeout']} | {other} | {not_run} | {rate} | ≥ {goal} % ({met}) |")
    lines += ["", "Killed % counts a timeout as killed (the tests noticed: they never finished) and leaves out mutants not run "
              "(not checked, skipped, interrupted); any other status (no tests, suspicious, segfault) counts as not killed.", ""]
    listed = [(module, name) for module in MODULES for name in survivors.get(module, [])]
    if listed:
        lines += ["Every survivor, and why it is equivalent:", ""]
        for _, name in listed:
            lines.append(f"- `{name}`: {changes[name]}. {EQUIVALENT.get(name, '**Not explained: a test is missing.**')}")
    else:
        lines.append("No mutant survived.")
    lines.append(END)
    return "\n".join(lines)


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("document")
    parser.add_argument("folders", nargs="+", help="the passes' folders (each with its mutants/)")
    parser.add_argument("--command", required=True)
    parser.add_argument("--seconds", type=int, required=True)
    parser.add_argument("--load", required=True)
    parser.add_argument("--children", type=int, required=True)
    args = parser.parse_args(argv)
    counts, survivors, folders = defaultdict(Counter), defaultdict(list), {}
    for folder in args.folders:
        pass_counts, pass_survivors = parse(mutmut(folder, "results", "--all", "true"))
        for module, counter in pass_counts.items():
            counts[module] += counter
        for module, names in pass_survivors.items():
            survivors[module] += names
            folders.update(dict.fromkeys(names, folder))
    changes = {name: change_of(folder, name) for name, folder in folders.items()}
    section = render(counts, survivors, changes, args.command, args.seconds, args.load, args.children)
    doc = Path(args.document)
    text = doc.read_text()
    if BEGIN not in text:
        raise SystemExit(f"{doc} has no {BEGIN} ... {END} section to replace")
    head, rest = text.split(BEGIN, 1)
    doc.write_text(head + section + rest.split(END, 1)[1])
    print(section)


if __name__ == "__main__":
    main(sys.argv[1:])
