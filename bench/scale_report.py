"""The "How cost grows" section of docs/performance.md and its charts, from bench_scale's stored figures."""

import os
import platform

START, END = "<!-- scale-bench:start -->", "<!-- scale-bench:end -->"
SIZES = ("1x", "10x", "100x")


def write(results, doc, images):
    images.mkdir(parents=True, exist_ok=True)
    charts = draw_charts(results, images)
    text = "\n".join([START, *section(results, charts, os.path.relpath(images, doc.parent)), END])
    current = doc.read_text() if doc.exists() else "# Performance\n"
    if START in current and END in current:
        before, rest = current.split(START, 1)
        current = before + text + rest.split(END, 1)[1]
    else:
        current = current.rstrip("\n") + "\n\n" + text + "\n"
    doc.write_text(current)
    print(f"wrote the How cost grows section of {doc} and {len(charts)} charts in {images}")


def stamp(figures) -> str:
    return f"Measured {figures['when']} with `{figures['command']}` (load average before: {figures['load']})."


def section(r, charts, img) -> list:
    out = [
        "## How cost grows",
        "",
        f"Written by `scripts/bench_scale.py` on {os.cpu_count()} cores, Python {platform.python_version()}. "
        "Each table says when it was measured and the machine's load average just before (2 would mean both cores "
        "already busy); the ratios compare runs made minutes apart in the same invocation.",
        "",
    ]
    if "sources" in r:
        s = r["sources"]
        out += ["### The sources", "", stamp(s), "`flask --app webapp demo-data DIR --campaigns N --banners M --rows R`:", "",
                "| source | campaigns | banners | CSV rows | CSV MB | seconds to generate |", "|---|---:|---:|---:|---:|---:|"]
        for name in (*SIZES, "catalogue"):
            if name in s:
                f = s[name]
                out.append(f"| {name} | {f['campaigns']:,} | {f['banners']:,} | {f['rows']:,} | {f['bytes'] / 2**20:.0f} | {f['seconds']} |")
        out += ["", "`catalogue` has 10,000 campaigns in every quarter (40,000 campaign-slots) but few rows: the serving, "
                "dashboard and load-test figures grow with campaigns, not rows.", ""]
    if "ingest" in r:
        out += ingest_section(r["ingest"], charts, img)
    if r.get("copy", {}).get("copy"):
        c = r["copy"]
        copy = min(x["seconds"] for x in c["copy"])
        values = min(x["seconds"] for x in c["values"])
        out += ["### PostgreSQL's write path", "", stamp(c),
                f"`jobs.store.insert` of {c['rows']:,} click rows, alternating the two paths twice (best of two): "
                f"COPY {copy} s ({c['copy'][0]['cpu_seconds']} s of our CPU), execute_values {values} s "
                f"({c['values'][0]['cpu_seconds']} s of our CPU): COPY writes in **{copy / values:.2f}x** the time. A whole "
                "load also parses and aggregates, so there the saving is smaller (the COPY / execute_values lines above).", ""]
    if "serving" in r:
        out += serving_section(r["serving"])
    if "session" in r:
        out += session_section(r["session"], charts, img)
    if "loadtest" in r:
        out += loadtest_section(r["loadtest"], charts, img)
    if "dashboard" in r:
        out += dashboard_section(r["dashboard"])
    if "export" in r:
        e = r["export"]
        out += ["### Live export", "", stamp(e), "",
                f"One export run drained {e['events']:,} impression events from the stream into directory batches in "
                f"{e['seconds']} s: **{e['events_per_second']:,} events/s** of wall time (goal ≥ 20,000); the exporter's own "
                f"CPU time was {e.get('cpu_seconds', '–')} s, so one exporter on a core of its own drains about "
                f"{e.get('events_per_cpu_second', 0):,} events/s.", ""]
        if "rollup" in e:
            ru = e["rollup"]
            out += [f"The dashboard's hourly rollups are part of that run. Counted again alone, in the export's chunks, the same "
                    f"{ru['events']:,} events over {ru['campaigns']:,} campaigns took {ru['seconds']} s: "
                    f"{ru['events_per_second']:,} events/s.", ""]
    out += sizing_guide(r)
    return out


def ingest_section(g, charts, img) -> list:
    out = ["### Ingest growth", "", stamp(g),
           "A full load into an empty database, each in a fresh process (peak = the process's maximum RSS). "
           "PostgreSQL loads through COPY (jobs/store.py); the execute_values rows are the same load through the "
           "previous path, in the same run (at 1x and 10x; at 100x it would only add ten minutes).", "",
           "| engine | source | CSV rows | seconds | of which images | rows/s | peak MB | database MB | status |",
           "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    engines = ("sqlite", "postgresql", "postgresql (execute_values)")
    for engine in engines:
        for size in SIZES:
            f = g.get(engine, {}).get(size)
            if f:
                out.append(f"| {engine} | {size} | {f['rows']:,} | {f['seconds']} | {f.get('images_seconds', '–')} | "
                           f"{f['rows'] / f['seconds']:,.0f} | "
                           f"{f['peak_mb']} | {f.get('database_mb', '–')} | {f['status']} |")
    out.append("")
    for size in SIZES:
        copy, values = g.get("postgresql", {}).get(size), g.get("postgresql (execute_values)", {}).get(size)
        if copy and values:
            out.append(f"- PostgreSQL {size}: COPY took **{copy['seconds'] / values['seconds']:.2f}x** the time of execute_values "
                       "(same run).")
    for engine in engines:
        e = g.get(engine, {})
        for small, big in (("1x", "10x"), ("10x", "100x")):
            if small in e and big in e:
                rows = e[big]["rows"] / e[small]["rows"]
                line = (f"- {engine}, {small} → {big}: {rows:.1f}x the rows took **{e[big]['seconds'] / e[small]['seconds']:.1f}x** "
                        f"the time (goal ≤ 12x for 10x the rows) and {e[big]['peak_mb'] / e[small]['peak_mb']:.1f}x the peak memory")
                if "images_seconds" in e[small] and "images_seconds" in e[big]:
                    rows_only = (e[big]["seconds"] - e[big]["images_seconds"]) / (e[small]["seconds"] - e[small]["images_seconds"])
                    line += (f"; the rows alone took {rows_only:.1f}x, the images {e[big]['images_seconds']:.1f} s against "
                             f"{e[small]['images_seconds']:.1f} s")
                out.append(line + ".")
    huge = g.get("sqlite", {}).get("100x")
    if huge:
        peaks = [g[e]["100x"]["peak_mb"] for e in engines if "100x" in g.get(e, {})]
        out.append(f"- 100x on SQLite: **{huge['seconds']:.0f} s** (goal under 300 s); the highest peak at 100x is "
                   f"**{max(peaks)} MB** (the ingest-hardening bound is 400 MB). The 100x source has 100,000 images: "
                   "they are checked one by one and written 500 to a transaction (jobs/images.py).")
    out += ["", f"![ingest seconds and peak memory against rows]({img}/{charts['ingest']})" if "ingest" in charts else "", ""]
    return out


def serving_section(s) -> list:
    out = ["### Serving growth: the plan cache", "", stamp(s),
           "Per web process: the plans of every campaign and quarter in memory (tracemalloc of one load), the time of "
           "one load (median of 5; it runs in the process's reloader thread, never in a request), and the rendered slot "
           "pages it keeps (at most `PAGES_MAX` = 20,000 per data version).", "",
           "| campaigns | plans | load ms (median) | all loads, ms | plans MB | page bytes | pages at the cap, MB |",
           "|---:|---:|---:|---|---:|---:|---:|"]
    for name in ("50", "10000"):
        if name in s:
            f = s[name]
            out.append(f"| {f['campaigns']:,} | {f['plans']:,} | {f['load_ms']} | {', '.join(map(str, f['load_ms_all']))} | "
                       f"{f['plans_mb']} | {f['page_bytes']:,} | {f['pages_max_mb']} |")
    out += ["", "Goal: a reload under 200 ms at 10,000 campaigns x 4 slots.", ""]
    return out


def session_section(s, charts, img) -> list:
    out = ["### Sessions", "", stamp(s),
           "Bytes of a visitor's rotations in Redis (`MEMORY USAGE` of its hash, key and overhead included) after "
           "visiting N campaigns once each, with today's rule (the 64 most recently seen campaigns) and without any bound:", "",
           "| campaigns visited | bounded (bytes) | unbounded (bytes) |", "|---:|---:|---:|"]
    for p in s["points"]:
        out.append(f"| {p['campaigns']:,} | {p['bounded']:,} | {p['unbounded']:,} |")
    out += ["", f"![session bytes against campaigns visited]({img}/{charts['session']})" if "session" in charts else "", ""]
    return out


def loadtest_section(lt, charts, img) -> list:
    runs = lt["runs"]
    out = ["### Load test at 10,000 campaigns", "", stamp(lt),
           f"`scripts/loadtest.sh {lt['seconds']}` with `LOADTEST_PAGE_ONLY=1`, once on the demo data (50 campaigns) and once "
           f"on `catalogue` (10,000 campaigns), each stack measured steady and then while the data version moved every "
           f"{lt['reload_every']} s (every web process reloading all its plans; `LOADTEST_DURING`).", "",
           "| campaigns | run | views/min | p50 ms | p99 ms | errors | CPU µs per view: web process / nginx / Redis |",
           "|---:|---|---:|---:|---:|---:|---|"]
    for name in ("50", "10000"):
        for kind in ("steady", "reloading"):
            f = runs.get(name, {}).get(kind)
            if f:
                cpu = f.get("cpu_us")
                cpu = f"{cpu['app']} / {cpu['nginx']} / {cpu['redis']}" if cpu else "–"
                out.append(f"| {int(name):,} | {kind} | {f['per_minute']:,} | {f['p50_ms']} | {f['p99_ms']} | {f['errors']} | {cpu} |")
    if "50" in runs and "10000" in runs:
        a, b = runs["50"], runs["10000"]
        out += ["", f"- Rate at 10,000 / rate at 50 campaigns (steady): **{b['steady']['per_minute'] / a['steady']['per_minute']:.2f}** (goal ≥ 0.90).",
                f"- p99 while reloading / steady p99 at 10,000 campaigns: **{b['reloading']['p99_ms'] / b['steady']['p99_ms']:.2f}** (goal ≤ 2); "
                f"at 50: {a['reloading']['p99_ms'] / a['steady']['p99_ms']:.2f}."]
        if "cpu_us" in a["steady"] and "cpu_us" in b["steady"]:
            out.append(f"- web process CPU per view at 10,000 / at 50 campaigns: **{b['steady']['cpu_us']['app'] / a['steady']['cpu_us']['app']:.2f}**. "
                       "At 10,000 campaigns a process keeps only a third of a quarter's ~60,000 slot pages (`PAGES_MAX`), "
                       "so most views build their page; webapp/slots.py fills a skeleton rendered once (a few µs) "
                       "rather than rendering the template (~75 µs).")
        out.append(f"- While the data version moved every {lt['reload_every']} s the rate at 10,000 campaigns fell to "
                   f"{b['reloading']['per_minute'] / b['steady']['per_minute']:.2f} of steady (at 50: "
                   f"{a['reloading']['per_minute'] / a['steady']['per_minute']:.2f}): every process reloads 40,000 plans "
                   "(off the request thread, but sharing its process's CPU and GIL), then parses each plan and builds each "
                   "page again on first use. Real loads come every 12 hours (`INGEST_CRON`), not every 2 s.")
        out.append("- wrk, nginx, the web process and Redis share the machine's cores in these runs, and the stacks differ from the "
                   "Load test section's: compare rates only within this table.")
    out += ["", f"![page rate against campaigns]({img}/{charts['loadtest']})" if "loadtest" in charts else "", ""]
    return out


def dashboard_section(d) -> list:
    engines = [e for e in ("sqlite", "postgresql") if e in d]
    out = ["### Dashboard growth", "", stamp(d),
           f"Server time of each view through Flask's test client (median of 7, signed in), with "
           f"{d[engines[0]]['rows']:,} campaign-slot rows:", "",
           "| view | " + " | ".join(f"{e} ms (median / max)" for e in engines) + " | sqlite, CPU ms of the process |",
           "|---|" + "---:|" * (len(engines) + 1)]
    for name, view in d[engines[0]]["views"].items():
        cells = [f"{d[e]['views'][name]['median_ms']} / {d[e]['views'][name]['max_ms']}" for e in engines]
        cells.append(str(d["sqlite"]["views"][name].get("cpu_ms", "–")) if "sqlite" in d else "–")
        out.append(f"| {name} (`{view['path']}`) | " + " | ".join(cells) + " |")
    out.append("")
    for e in engines:
        c = d[e]["csv"]
        out.append(f"- CSV export on {e}: {c['bytes'] / 2**20:.1f} MB in {c['seconds']} s, peak Python memory while "
                   f"streaming it {c['peak_mb']} MB.")
    ratio = d.get("postgresql", {}).get("ratio_sort")
    if ratio:
        out.append(f"- Sorting by a ratio on PostgreSQL: the CTR-sorted first page's query took {ratio['numeric']} ms with the "
                   f"ratio as an exact NUMERIC (`clicks * 1.0 / impressions`, as before) and {ratio['double']} ms as a double "
                   f"(as now), medians of the same run.")
    for e in engines:
        live = d[e].get("live")
        if live:
            view = d[e]["views"]["overview, last 30 days vs the 30 before"]
            out.append(f"- Live trends on {e}: {live['rows']:,} LiveHour rows ({live['campaigns']:,} campaigns × {live['hours']} hours). "
                       f"The overview reads the site's {live['hours']} hourly sums (LiveSiteHour, kept by the export job in the "
                       f"same transaction): {view['median_ms']} ms for the whole page with the 30 days before it; summing every campaign's hours per "
                       f"request, as it did before, took {live['summed_per_request_ms']} ms for the query alone (same run).")
    for e in engines:
        live_views = {n: v for n, v in d[e]["views"].items() if n.startswith("stats live")}
        if live_views:
            slowest = max(live_views.values(), key=lambda v: v["median_ms"])
            out.append(f"- The stats table's live view on {e}: every campaign's figures over a period and the one before "
                       f"are the differences of at most four marks (LiveMark: each campaign's totals before an hour, kept by "
                       f"the export job), {len(live_views)} views at {min(v['median_ms'] for v in live_views.values())}–"
                       f"{slowest['median_ms']} ms median (`{slowest['path']}` the slowest), where summing LiveHour per "
                       f"campaign would read a row per campaign and hour.")
    out += ["", "Goal: under 100 ms for every view.", ""]
    return out


def sizing_guide(r) -> list:
    from scale_sizing import guide

    return guide(r)


def draw_charts(r, folder) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    charts = {}
    if "ingest" in r:
        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
        for engine, marker in (("sqlite", "o"), ("postgresql", "s"), ("postgresql (execute_values)", "^")):
            points = [r["ingest"][engine][s] for s in SIZES if s in r["ingest"].get(engine, {})]
            if points:
                rows = [p["rows"] / 1e6 for p in points]
                left.plot(rows, [p["seconds"] for p in points], marker=marker, label=engine)
                right.plot(rows, [p["peak_mb"] for p in points], marker=marker, label=engine)
        left.set(xlabel="CSV rows (millions)", ylabel="seconds", title="Full load time")
        right.set(xlabel="CSV rows (millions)", ylabel="peak RSS (MB)", title="Peak memory of the load")
        for ax in (left, right):
            ax.grid(True, alpha=0.3)
            ax.legend()
        charts["ingest"] = _save(fig, folder / "scale-ingest.png")
    if "session" in r:
        fig, ax = plt.subplots(figsize=(6, 4))
        points = r["session"]["points"]
        ax.plot([p["campaigns"] for p in points], [p["unbounded"] for p in points], marker="o", label="without a bound")
        ax.plot([p["campaigns"] for p in points], [p["bounded"] for p in points], marker="o", label="64 most recent")
        ax.set(xscale="log", yscale="log", xlabel="campaigns visited", ylabel="bytes in Redis", title="A visitor's rotations")
        ax.axhline(2048, color="grey", linestyle="--", linewidth=1, label="2 KB")
        ax.grid(True, alpha=0.3)
        ax.legend()
        charts["session"] = _save(fig, folder / "scale-session.png")
    if "loadtest" in r:
        runs = r["loadtest"]["runs"]
        names = [n for n in ("50", "10000") if n in runs]
        fig, ax = plt.subplots(figsize=(6, 4))
        width = 0.35
        for i, kind in enumerate(("steady", "reloading")):
            ax.bar([j + i * width for j in range(len(names))], [runs[n][kind]["per_minute"] for n in names], width, label=kind)
        ax.set_xticks([j + width / 2 for j in range(len(names))], [f"{int(n):,} campaigns" for n in names])
        ax.set(ylabel="page views per minute", title="Page rate through nginx")
        ax.legend()
        charts["loadtest"] = _save(fig, folder / "scale-pagerate.png")
    return charts


def _save(fig, path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path.name
