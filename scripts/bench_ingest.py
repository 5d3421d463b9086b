"""Ingest benchmark: the whole dataset into an empty SQLite database, then a re-run with nothing changed.

Writes its figures to the "## Ingest" section of docs/performance.md.
Usage: .venv/bin/python scripts/bench_ingest.py [SOURCE] [--repeat N]
(SOURCE defaults to ../shared/reference-data, or freshly generated demo data when that is absent.)
"""

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
REFERENCE = ROOT.parent / "shared" / "reference-data"
START, END = "<!-- ingest-bench:start -->", "<!-- ingest-bench:end -->"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/performance.md alone")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    source = Path(args.source) if args.source else REFERENCE
    if not (source / "1" / "impressions.csv").exists():
        from jobs.demo import write_demo_source

        source = work / "demo"
        write_demo_source(source)
    try:
        result = measure(source, work, args.repeat)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = report(result, source, args)
    print(text)
    if not args.no_write:
        write_section(ROOT / "docs" / "performance.md", text)


def measure(source, work, repeat):
    import logging

    from config import load_settings
    from jobs import runtime
    from jobs.ingest import run_ingest
    from jobs.parsing import parse_clicks, parse_conversions, parse_impressions
    from models import IngestFile, IngestRun

    logging.getLogger("bannerservice").disabled = True
    full, rerun, parse_only, rows = [], [], [], 0
    for i in range(repeat):
        instance = work / f"run{i}"
        settings = load_settings(
            database_url=f"sqlite:///{instance / 'bench.db'}",
            image_dir=str(instance / "images"),
            log_file="",
            redis_prefix=f"bench:{uuid.uuid4().hex[:8]}:",
        )
        ctx = runtime.context(settings)
        started = time.perf_counter()
        run_id = run_ingest(str(source), trigger="cli")
        full.append(time.perf_counter() - started)
        run = IngestRun.get_by_id(run_id)
        assert run.status in (IngestRun.SUCCEEDED, IngestRun.SUCCEEDED_WITH_REJECTS), run.error
        rows = sum(f.rows_read for f in IngestFile.select().where(IngestFile.run == run_id))
        started = time.perf_counter()
        again = run_ingest(str(source), trigger="cli")
        rerun.append(time.perf_counter() - started)
        assert all(f.unchanged for f in IngestFile.select().where(IngestFile.run == again))
        # The floor: only reading and parsing the CSV files, nothing stored.
        started = time.perf_counter()
        for q in (1, 2, 3, 4):
            with open(source / str(q) / "impressions.csv", "rb") as f:
                parse_impressions(f)
            with open(source / str(q) / "clicks.csv", "rb") as f:
                clicks, _ = parse_clicks(f)
            with open(source / str(q) / "conversions.csv", "rb") as f:
                parse_conversions(f, clicks)
        parse_only.append(time.perf_counter() - started)
        keys = list(ctx.redis.scan_iter(f"{settings.redis_prefix}*"))
        if keys:
            ctx.redis.delete(*keys)
    return {"full": full, "rerun": rerun, "parse_only": parse_only, "rows": rows,
            "images": len(list((source / "images").glob("image_*")))}


def report(result, source, args):
    full, rerun, parse = (statistics.median(result[k]) for k in ("full", "rerun", "parse_only"))
    command = "python scripts/bench_ingest.py" + (f" {args.source}" if args.source else "") + f" --repeat {args.repeat}"
    return "\n".join([
        START,
        "## Ingest",
        "",
        f"Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, SQLite, with `{command}`.",
        f"Source: `{source.name if source.name != 'reference-data' else '../shared/reference-data'}` — "
        f"{result['rows']:,} CSV rows over four quarters, {result['images']} images. Median of {args.repeat} runs:",
        "",
        "| what | seconds | target |",
        "|---|---:|---:|",
        f"| full load into an empty database | {full:.2f} | ≤ 5 |",
        f"| re-run, nothing changed | {rerun:.3f} | < 1 |",
        f"| reading and parsing the CSVs only (the floor, nothing stored) | {parse:.2f} | – |",
        "",
        f"Full load / parse-only floor: **{full / parse:.2f}x** (same run). "
        f"All runs: full {', '.join(f'{v:.2f}' for v in result['full'])}; "
        f"re-run {', '.join(f'{v:.3f}' for v in result['rerun'])}.",
        "The system this replaces needed almost 8 minutes for the same load.",
        END,
    ])


def write_section(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    current = path.read_text() if path.exists() else "# Performance\n"
    if START in current and END in current:
        before, rest = current.split(START, 1)
        after = rest.split(END, 1)[1]
        current = before + text + after
    else:
        current = current.rstrip("\n") + "\n\n" + text + "\n"
    path.write_text(current)


if __name__ == "__main__":
    main()
