"""The sizing guide of docs/performance.md: what to provision, from bench_scale's measured figures."""

import os

# From the load test section of docs/performance.md (scripts/loadtest.sh): bytes per live-stream entry.
STREAM_BYTES_PER_EVENT = 101
STREAM_CAP = 5_000_000


def guide(r) -> list:
    cores = os.cpu_count() or 1
    out = ["### Sizing guide", "",
           f"Each line turns a figure measured above into a rule of thumb. They are conservative: the load test ran its "
           f"load generator on the same {cores}-core machine as the service.", ""]
    cpu = r.get("loadtest", {}).get("runs", {}).get("10000", {}).get("steady", {}).get("cpu_us")
    if cpu:
        web = cpu["app"] + cpu["nginx"]
        per_core = 60e6 / web
        out += [f"- **Visitors per minute → web cores.** At 10,000 campaigns a page view cost {cpu['app']} µs of web-process "
                f"CPU and {cpu['nginx']} µs of nginx (load test above; CPU time, which a busy machine inflates less than "
                f"the rates): one core serves about **{per_core:,.0f} views/min**. Web cores ≈ peak views per minute × "
                f"views per visitor / {per_core:,.0f}, plus one for headroom and the reloads."]
    elif _page_rate(r):
        out += [f"- **Visitors per minute → web cores.** {_page_rate(r):,.0f} views/min on {cores} shared cores."]
    session = _session_bytes(r)
    if session:
        per_visitor = session
        out += [f"- **Concurrent visitors → session Redis memory.** A visitor's rotations take at most {session:,} bytes "
                f"in Redis (64 campaigns held, key and overhead included): **{per_visitor / 1024:.1f} KB per "
                f"visitor active within `SESSION_LIFETIME_MINUTES`**, so 1 million such visitors need about "
                f"{per_visitor * 1e6 / 2**30:.1f} GiB (most visitors see few campaigns and cost far less)."]
    export = r.get("export", {}).get("events_per_second")
    if export:
        per_minute = export * 60
        out += [f"- **Events per minute → stream memory and exporters.** Each event waits in the stream at about "
                f"{STREAM_BYTES_PER_EVENT} bytes until the export (every 5 minutes) takes it: stream memory ≈ events per minute "
                f"× 5 × {STREAM_BYTES_PER_EVENT} B (1 million events/min ≈ {1e6 * 5 * STREAM_BYTES_PER_EVENT / 2**20:.0f} MiB); the "
                f"stream is capped at {STREAM_CAP:,} entries (~{STREAM_CAP * STREAM_BYTES_PER_EVENT / 2**20:.0f} MiB). One exporter "
                f"drained {export:,} events/s here = **{per_minute / 1e6:.1f} million events/min** (its own "
                f"CPU allows about {r['export'].get('events_per_cpu_second', export):,}/s); past that, shorten `EXPORT_CRON` "
                f"or the exports fall behind (one exporter runs at a time, by design)."]
    ingest = r.get("ingest", {})
    lines = []
    for engine in ("sqlite", "postgresql"):
        biggest = next((ingest[engine][s] for s in ("100x", "10x", "1x") if s in ingest.get(engine, {})), None)
        if biggest and biggest.get("database_mb"):
            lines.append(f"{engine}: {biggest['rows'] / biggest['seconds'] / 1e3:,.0f} thousand rows/s, "
                         f"{biggest['database_mb'] / (biggest['rows'] / 1e6):.0f} MB of database per million rows, "
                         f"peak {biggest['peak_mb']} MB of worker memory at {biggest['rows'] / 1e6:.1f} M rows")
    sources = [f for f in r.get("sources", {}).values() if isinstance(f, dict) and f.get("rows")]
    row_bytes = max((f["bytes"] / f["rows"] for f in sources), default=11)
    if lines:
        out += ["- **Rows per load → database, disk and time.** " + "; ".join(lines) + ". Disk ≈ the source's CSV "
                f"(about {row_bytes:.0f} bytes a row) + the database + as much again for the transaction of the largest quarter."]
    out += ["", "**Scaling out, in order:**", "",
            "1. **Web replicas behind nginx** when the web cores are busy: nothing is shared between web processes but "
            "Redis and the database, and each holds the plans (a few MB at 10,000 campaigns, table above).",
            "2. **PostgreSQL** as soon as there is more than one host (SQLite is one file on one disk), or when a "
            "load's write transaction would block dashboard reads too long.",
            "3. **A dedicated session Redis** when the sessions' memory (the rule above) no longer fits beside the "
            "queue and the stream, or when Redis's CPU passes about half a core: every page view costs it one script call "
            f"(its rotation step and its event; {cpu['redis'] if cpu else 55} µs of Redis CPU per view in the load test), so one Redis core "
            f"serves about {60e6 / (cpu['redis'] if cpu else 55) / 1e6:.1f} million views per minute.",
            "4. **More RQ workers** when ingests and exports queue behind each other; exports themselves stay one at "
            "a time (the lock), so past one exporter's rate, export more often rather than in parallel.", ""]
    return out


def _page_rate(r):
    runs = r.get("loadtest", {}).get("runs", {})
    return runs.get("10000", {}).get("steady", {}).get("per_minute")


def _session_bytes(r):
    points = r.get("session", {}).get("points", [])
    return max((p["bounded"] for p in points), default=None)
