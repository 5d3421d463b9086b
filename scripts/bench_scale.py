"""How cost grows: ingest, serving, sessions, dashboard, export and the load test at 1x, 10x (and 100x).

Each step stores its figures in instance/bench-scale/results.json (so steps can run apart, at
different times), and every run rewrites the "How cost grows" section of docs/performance.md from
all stored figures, with charts in docs/img/. Sources are generated once into instance/bench-scale/.

Usage: .venv/bin/python scripts/bench_scale.py [--steps sources,ingest,copy,serving,dashboard,export,session,loadtest]
       [--huge] [--postgres URL] [--no-write]
--huge adds the 100x source (80 M rows, 10,000 campaigns, 100,000 banners: minutes to make and load).
PostgreSQL runs use --postgres (default: postgresql://postgres@127.0.0.1:5432/test when it answers),
one database per run, dropped afterwards. Needs `pip install -e .[bench]` for the charts.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
WORK = ROOT / "instance" / "bench-scale"
RESULTS = WORK / "results.json"
POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"

# name: (campaigns, banners, rows, images). "catalogue" is 10,000 campaigns x 4 slots with few rows:
# the serving, dashboard and load-test figures depend on campaigns, not rows.
SOURCES = {
    "1x": (50, 400, 800_000, True),
    "10x": (1_000, 10_000, 8_000_000, True),
    "100x": (10_000, 100_000, 80_000_000, True),
    "catalogue": (10_000, 100_000, 2_000_000, False),
}
ALL_STEPS = ("sources", "ingest", "copy", "serving", "dashboard", "export", "session", "loadtest")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default=",".join(ALL_STEPS))
    parser.add_argument("--huge", action="store_true", help="add the 100x source (minutes)")
    parser.add_argument("--postgres", default=os.environ.get("BENCH_POSTGRES_URL", POSTGRES))
    parser.add_argument("--loadtest-seconds", type=int, default=15)
    parser.add_argument("--no-write", action="store_true", help="leave docs/performance.md alone")
    args = parser.parse_args()
    import scale_steps

    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    postgres = args.postgres if scale_steps.postgres_answers(args.postgres) else None
    sizes = ["1x", "10x"] + (["100x"] if args.huge else [])
    command = "python scripts/bench_scale.py " + " ".join(sys.argv[1:])
    for step in args.steps.split(","):
        started = time.monotonic()
        print(f"==> {step}", flush=True)
        if step == "sources":
            figures = {name: scale_steps.make_source(WORK / "sources" / name, *SOURCES[name])
                       for name in sizes + ["catalogue"]}
        elif step == "ingest":
            figures = scale_steps.ingest_growth(WORK, sizes, postgres)
        elif step == "copy":
            figures = scale_steps.postgres_write_path(postgres)
        elif step == "serving":
            figures = scale_steps.serving_growth(WORK)
        elif step == "dashboard":
            scale_steps.make_source(WORK / "sources" / "catalogue", *SOURCES["catalogue"])  # once: a marker keeps it
            figures = scale_steps.dashboard_growth(WORK, postgres)
        elif step == "export":
            figures = scale_steps.export_throughput(WORK)
        elif step == "session":
            figures = scale_steps.session_bytes()
        elif step == "loadtest":
            figures = scale_steps.loadtest_growth(WORK, args.loadtest_seconds)
        else:
            parser.error(f"unknown step {step!r}; steps are {', '.join(ALL_STEPS)}")
        figures.update(when=f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC", command=command,
                       load=scale_steps.load_average())
        results[step] = figures
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=1))
        print(json.dumps(figures, indent=1)[:3000], f"\n({time.monotonic() - started:.0f} s)", flush=True)
    if not args.no_write:
        import scale_report

        scale_report.write(results, ROOT / "docs" / "performance.md", ROOT / "docs" / "img")


def helper():
    """Subprocess entry points: `_ingest SOURCE DATABASE_URL [copy|values]` and `_reloads SECONDS EVERY`."""
    import scale_steps

    if sys.argv[1] == "_ingest":
        print(json.dumps(scale_steps.ingest_once(sys.argv[2], sys.argv[3], *sys.argv[4:5])))
    elif sys.argv[1] == "_reloads":
        scale_steps.publish_reloads(float(sys.argv[2]), float(sys.argv[3]))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1].startswith("_"):
        helper()
    else:
        main()
    sys.exit(0)
