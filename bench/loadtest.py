"""Helpers of scripts/loadtest.sh: visitors, campaign list, CPU and Redis readings, and the report.

Subcommands (each prints or writes what scripts/loadtest.sh needs):
  visitors URL N FILE        make N visitors (one request each), write their cookies to FILE
  campaigns                  print the campaigns that have a plan in every quarter, comma-separated
  cpu NAME=PIDFILE...        print NAME=clock-ticks of each process tree
  redis URL PREFIX           print JSON: memory, session keys and their sizes, command counts
  busy                       print how busy the CPUs are (percent, over 2 s)
  report WORK DOC            write the "## Load test" section of DOC from the run's files in WORK
  compare OUT REF SHA HEAD COMMAND DURATION CONNECTIONS DOC
                             write scripts/loadtest_compare.sh's section of DOC from the runs in OUT
"""

import json
import os
import statistics
import sys
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SECTION = "## Load test"
ROUND_MODES = ("page", "embed", "decision")  # the runs of each interleaved round of scripts/loadtest.sh


def make_visitors(base_url, count, path):
    """Each visitor's first visit, whose Set-Cookie it will send from then on."""
    campaigns = campaign_ids()
    cookies = []
    for i in range(count):
        with urllib.request.urlopen(f"{base_url}/campaigns/{campaigns[i % len(campaigns)]}") as response:
            cookie = response.headers["Set-Cookie"].split(";", 1)[0]
        cookies.append(cookie)
    Path(path).write_text("\n".join(cookies) + "\n")


def campaign_ids() -> list:
    """Campaigns with a plan in all four quarters, so a run that crosses a quarter never gets a 404."""
    from models import Plan, db
    from jobs import runtime

    runtime.context()
    with db.connection_context():
        quarters = {}
        for plan in Plan.select(Plan.quarter, Plan.campaign_id):
            quarters.setdefault(plan.campaign_id, set()).add(plan.quarter)
    return sorted(c for c, qs in quarters.items() if len(qs) == 4)


def _tree(pid) -> list:
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def _ticks(pid) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime + stime


def cpu_ticks(pidfiles: dict) -> dict:
    """{name: user+system clock ticks of the process tree whose root is in that pid file}."""
    return {name: sum(_ticks(p) for p in _tree(int(Path(f).read_text().split()[0]))) for name, f in pidfiles.items()}


def redis_stats(url, prefix) -> dict:
    """Memory, visitor-state count and sizes (named "session" as when visitors had sessions), and commands served."""
    import redis

    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(f"{prefix}visitor:*", count=1000))  # visitors' rotations (a hash each)
    with client.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.hgetall(key)
        for key in keys:
            pipe.memory_usage(key, samples=0)
        for key in keys:
            pipe.ttl(key)
        values = pipe.execute()
    n = len(keys)
    lengths = [sum(len(field) + len(value) for field, value in fields.items()) for fields in values[:n]]
    usages, ttls = values[n:2 * n], values[2 * n:]
    info = client.info()
    commands = client.info("commandstats")
    stream = f"{prefix}events"
    return {
        "events_stream_entries": client.xlen(stream) if client.exists(stream) else 0,
        "events_stream_bytes": (client.memory_usage(stream, samples=0) or 0) if client.exists(stream) else 0,
        "used_memory": info["used_memory"],
        "keys": client.dbsize(),
        "sessions": n,
        "session_key_bytes": round(sum(len(k) for k in keys) / n, 1) if n else 0,
        "session_payload_bytes_avg": round(sum(lengths) / n, 1) if n else 0,
        "session_payload_bytes_max": max(lengths, default=0),
        "session_memory_usage_avg": round(sum(usages) / n, 1) if n else 0,
        "session_ttl_min": min(ttls, default=None),
        "session_ttl_max": max(ttls, default=None),
        "calls": sum(v["calls"] for v in commands.values()),
        "calls_by_command": {k.removeprefix("cmdstat_"): v["calls"] for k, v in commands.items()},
    }


def busy_percent(seconds=2.0) -> float:
    """How busy the machine's CPUs were over the next `seconds`, from /proc/stat."""
    import time

    def sample():
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(values), values[3] + values[4]  # total, idle + iowait

    total0, idle0 = sample()
    time.sleep(seconds)
    total1, idle1 = sample()
    return 100.0 * (1 - (idle1 - idle0) / max(total1 - total0, 1))


def _errors(run) -> int:
    """A wrk run's non-2xx answers and socket errors."""
    return run["non2xx"] + sum(run[k] for k in ("connect", "read", "write", "timeout"))


def _per_minute(run) -> float:
    return run["requests"] / (run["duration_us"] / 1e6) * 60


def visitor_wording(results) -> str:
    """What bench/visitors.lua did with the visitors: one per connection only with one connection per thread."""
    if int(results["threads"]) >= int(results["connections"]):
        return "one wrk thread per connection, so each connection a returning visitor with its own visitor cookie and one request in flight"
    return (f"{results['connections']} returning visitors with their own visitor cookies, handed out round robin over "
            "each thread's connections (a visitor can have two requests in flight)")


def render_section(results) -> str:
    """The markdown of the "## Load test" section."""
    main, base = results["campaign"], results["baseline"]
    rpm, base_rpm = _per_minute(main), _per_minute(base)
    errors, base_errors = _errors(main), _errors(base)
    before, after = results["redis_before"], results["redis_after"]
    visitors = after["sessions"]
    cpu = results.get("cpu_us_per_request", {})
    # The page is measured twice with events on (before and after the events-off run), so a drift of the
    # machine's speed during the session weighs on both comparisons alike: the targets use their mean,
    # their worst p99 and all their errors.
    again = results["events_again"]
    page_rpm = (rpm + _per_minute(again)) / 2
    worst_p99 = max(main["p99_us"], again["p99_us"])
    errors += _errors(again)
    events_ratio = page_rpm / _per_minute(results["no_events"])
    targets = [
        ("page views/min through nginx (mean of the two events-on runs)", f"{page_rpm:,.0f}", "≥ 90,000 (aim 120,000)",
         page_rpm >= 90_000),
        ("p99 latency (worse of the two)", f"{worst_p99 / 1000:.1f} ms", "< 50 ms", worst_p99 < 50_000),
        ("errors (socket errors + non-2xx, both runs)", f"{errors}", "0", errors == 0),
        ("page rate / trivial endpoint's rate", f"{page_rpm / base_rpm:.2f}", "≥ 0.50", page_rpm / base_rpm >= 0.5),
        ("page rate with events on / off", f"{events_ratio:.2f}", "≥ 0.90", events_ratio >= 0.9),
    ]
    stateless = _per_minute(results["baseline_app"])
    targets.append(("page rate / the no-state baseline's (bench/baseline_app.py)", f"{page_rpm / stateless:.2f}",
                    "as close to 1 as the guarantees allow", None))
    rounds = results.get("rounds", [])
    for name, key in (("iframe", "embed"), ("JSON decision", "decision")):
        ratios = embed_ratios(rounds, key)
        if ratios:
            label = f"{name} rate / page rate (median of {len(ratios)} interleaved rounds; range)"
            median = statistics.median(ratios)
            targets.append((label, f"{median:.2f} ({min(ratios):.2f}–{max(ratios):.2f})", "≥ 1.00", median >= 1.0))
            mode_cpu, page_cpu = cpu.get(f"round_{key}"), cpu.get("round_page")
            if mode_cpu and page_cpu:  # what a rate ratio estimates, less shaken by the machine's drift
                costs = sum(page_cpu.values()) / sum(mode_cpu.values())
                targets.append((f"{name}: page's CPU per request / its own (all processes, all rounds)", f"{costs:.2f}",
                                "≥ 1.00", costs >= 1.0))
    lines = [
        SECTION,
        "",
        "Written by `scripts/loadtest.sh`; run it again to replace this section.",
        "",
        f"- When: {results['when']}",
        f"- Machine: {results['cores']} cores ({results['cpu_model']}), {results['memory']}; wrk, nginx, "
        "granian (the web process) and Redis all on this machine, talking over loopback.",
        f"- Other load: CPUs {results['busy_before']}% busy just before the runs (0 on an idle machine); "
        f"load average before/after {results['load_before']} / {results['load_after']}.",
        f"- Stack: nginx {results['nginx_version']} ({results['nginx_workers']} workers) → granian "
        f"({results['web_workers']} workers of {results['web_threads']} Python thread(s), unix socket) → Redis {results['redis_version']} "
        f"({results['redis_transport']}); database {results['database']}; demo data, {len(results['campaigns'])} campaigns.",
        f"- Command: `{results['command']}` ({results['duration']} s per run, {results['connections']} connections, "
        f"{results['threads']} wrk threads{', Redis over a unix socket' if 'unix' in results['redis_transport'] else ''}).",
        f"- wrk: {results['threads']} threads, {results['connections']} connections, {results['duration']} s per run; "
        f"{visitor_wording(results)}, every visitor over all campaigns (bench/visitors.lua).",
        "",
        "| measure | result | target | met |",
        "|---|---|---|---|",
        *(f"| {name} | {value} | {target} | {'—' if ok is None else 'yes' if ok else 'NO'} |"
          for name, value, target, ok in targets),
        "",
        "| run | requests | req/min | p50 | p90 | p99 | max | non-2xx | socket errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    runs = (("`/campaigns/<id>` (events on)", main), ("`/ping` (trivial, same stack)", base),
            ("`/campaigns/<id>` of the no-state baseline app", results["baseline_app"]),
            ("`/campaigns/<id>` with `EVENTS_ENABLED=0`", results["no_events"]),
            ("`/campaigns/<id>` (events on, again)", results["events_again"]))
    for name, run in runs:
        socket_errors = sum(run[k] for k in ("connect", "read", "write", "timeout"))
        lines.append(
            f"| {name} | {run['requests']:,} | {_per_minute(run):,.0f} | {run['p50_us'] / 1000:.1f} ms "
            f"| {run['p90_us'] / 1000:.1f} ms | {run['p99_us'] / 1000:.1f} ms | {run['max_us'] / 1000:.1f} ms "
            f"| {run['non2xx']} | {socket_errors} |"
        )
    if rounds:
        lines += [
            "",
            f"The embeds against the page: {len(rounds)} rounds, each the three runs back to back "
            f"({results['round_seconds']} s each, the order rotating from round to round), on the web process of "
            "the second page run:",
            "",
            "| round | page req/min | iframe req/min | decision req/min | iframe / page | decision / page "
            "| p99 page / iframe / decision | non-2xx + socket errors |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for number, runs_of in enumerate(rounds, 1):
            page, frame, decided = runs_of["page"], runs_of["embed"], runs_of["decision"]
            lines.append(
                f"| {number} | {_per_minute(page):,.0f} | {_per_minute(frame):,.0f} | {_per_minute(decided):,.0f} "
                f"| {_per_minute(frame) / _per_minute(page):.2f} | {_per_minute(decided) / _per_minute(page):.2f} "
                f"| {page['p99_us'] / 1000:.1f} / {frame['p99_us'] / 1000:.1f} / {decided['p99_us'] / 1000:.1f} ms "
                f"| {sum(_errors(run) for run in runs_of.values())} |")
    calls = after["calls"] - before["calls"]
    lines += [
        "",
        f"Baseline errors: {base_errors}.",
        "",
        "### Sessions and Redis",
        "",
        f"- Redis commands per page view: {calls / main['requests']:.2f} "
        f"({_command_split(before, after, main['requests'])}) in one round trip: one script call (EVALSHA, "
        "webapp/rotation_step.lua) that reads the visitor's rotation of the campaign (HGET), takes its step, keeps it "
        "(HINCRBY of the visitor's tick, HSET, EXPIRE) and runs the impression event's XADD and HINCRBY (the live "
        "counter's EXPIRE is sent once per minute bucket and process); Redis counts the commands a script runs. The plan cache's "
        "data-version check is once a second per process, not per request.",
        f"- Visitors (rotation states in Redis): {visitors}; each visited every campaign, the largest state there is.",
        f"- State payload (the hash's fields and values): {after['session_payload_bytes_avg']:.0f} bytes on average, "
        f"{after['session_payload_bytes_max']} at most; key {after['session_key_bytes']:.0f} bytes.",
        f"- Redis memory per visitor: {after['session_memory_usage_avg']:.0f} bytes (`MEMORY USAGE` of a state key, "
        "key and overhead included), so 100,000 visitors active within the session lifetime hold about "
        f"{after['session_memory_usage_avg'] * 100_000 / 2**20:.0f} MiB.",
        f"- Not per visitor but per page view: the live-events stream (impressions, written by the same script call as "
        f"the state) held {after['events_stream_entries']:,} entries in {after['events_stream_bytes'] / 2**20:.1f} MiB "
        f"at the end (~{after['events_stream_bytes'] / max(after['events_stream_entries'], 1):.0f} bytes each); the stream "
        f"is capped at 5,000,000 entries (live/events.py). Redis `used_memory`: {results['redis_empty']['used_memory']:,} bytes after ingest, "
        f"{after['used_memory']:,} after the run.",
        f"- Expiry: every state key has a TTL (between {after['session_ttl_min']} and {after['session_ttl_max']} s "
        f"left at the end, SESSION_LIFETIME_MINUTES={results['session_minutes']}), refreshed on each visit.",
    ]
    if cpu:
        lines += [
            "",
            "### CPU per request",
            "",
            "User + system CPU of each process tree during each run, divided by the requests served:",
            "",
            "| run | " + " | ".join(cpu["campaign"]) + " |",
            "|---|" + "---|" * len(cpu["campaign"]),
        ]
        names = {"campaign": "page, events on", "baseline": "/ping", "baseline_app": "no-state baseline app",
                 "no_events": "page, events off",
                 "events_again": "page, events on again", "round_page": "page, in the embed rounds",
                 "round_embed": "/embed (iframe), in the rounds", "round_decision": "/api/decision, in the rounds"}
        for run in (r for r in names if r in cpu):
            lines.append(f"| {names[run]} | " + " | ".join(f"{v:.0f} µs" for v in cpu[run].values()) + " |")
    notes = results.get("notes_file")
    if notes and Path(notes).exists():
        lines += ["", Path(notes).read_text().strip()]
    return "\n".join(lines) + "\n"


def _command_split(before, after, requests) -> str:
    diff = {
        name: after["calls_by_command"].get(name, 0) - before["calls_by_command"].get(name, 0)
        for name in after["calls_by_command"]
    }
    top = sorted(((n, c) for n, c in diff.items() if c), key=lambda item: -item[1])[:5]
    return ", ".join(f"{name.upper()} {count / requests:.2f}" for name, count in top)


START, END = "<!-- loadtest:start -->", "<!-- loadtest:end -->"


def replace_section(document: str, section: str, start=START, end=END) -> str:
    """`document` with a section (between its markers: the load test's by default) replaced, or added at the end."""
    block = f"{start}\n{section.rstrip()}\n{end}\n"
    if start in document and end in document:
        head, rest = document.split(start, 1)
        tail = rest.split(end, 1)[1].lstrip("\n")
        return head + block + ("\n" + tail if tail else "")
    if not document.strip():
        document = "# Performance\n"
    return document.rstrip("\n") + "\n\n" + block


def collect(work) -> dict:
    """The results of a run from the files scripts/loadtest.sh left in `work` and its LT_* variables."""
    work = Path(work)
    read = lambda name: json.loads((work / name).read_text())  # noqa: E731
    results = {key[3:].lower(): value for key, value in os.environ.items() if key.startswith("LT_")}
    results["campaigns"] = results["campaigns"].split(",")
    results["campaign"] = parse_wrk((work / "wrk-campaign.txt").read_text())
    results["baseline"] = parse_wrk((work / "wrk-baseline.txt").read_text())
    results["baseline_app"] = parse_wrk((work / "wrk-baseline-app.txt").read_text())
    results["no_events"] = parse_wrk((work / "wrk-campaign-noevents.txt").read_text())
    results["events_again"] = parse_wrk((work / "wrk-campaign-events2.txt").read_text())
    rounds = int(results.pop("rounds", None) or 0)  # LT_ROUNDS: how many rounds the script ran
    results["rounds"] = [
        {mode: parse_wrk((work / f"wrk-round{number}-{mode}.txt").read_text()) for mode in ROUND_MODES}
        for number in range(1, rounds + 1)
    ]
    for name in ("redis_empty", "redis_before", "redis_after"):
        results[name] = read(name.replace("_", "-") + ".json")
    cpu0, cpu1, cpu2 = read("cpu-0.json"), read("cpu-1.json"), read("cpu-2.json")
    tick_us = 1e6 / os.sysconf("SC_CLK_TCK")
    results["cpu_us_per_request"] = {
        run: {name: (end[name] - start[name]) * tick_us / results[run]["requests"] for name in start}
        for run, start, end in (
            ("campaign", cpu0, cpu1), ("baseline", cpu1, cpu2),
            ("baseline_app", read("cpu-baseline-app-0.json"), read("cpu-baseline-app-1.json")),
            ("no_events", read("cpu-noevents-0.json"), read("cpu-noevents-1.json")),
            ("events_again", read("cpu-events2-0.json"), read("cpu-events2-1.json")),
        )
    }
    for mode in ROUND_MODES if results["rounds"] else ():
        ticks = {name: 0 for name in cpu0}
        for number in range(1, len(results["rounds"]) + 1):
            start, end = read(f"cpu-round{number}-{mode}-0.json"), read(f"cpu-round{number}-{mode}-1.json")
            for name in ticks:
                ticks[name] += end[name] - start[name]
        served = sum(runs_of[mode]["requests"] for runs_of in results["rounds"])
        results["cpu_us_per_request"][f"round_{mode}"] = {name: t * tick_us / served for name, t in ticks.items()}
    results["notes_file"] = str(Path(__file__).resolve().parent / "analysis.md")
    (work / "results.json").write_text(json.dumps(results, indent=2))
    return results


def embed_ratios(rounds, mode) -> list:
    """Each round's rate of `mode` over the page's rate in the same round."""
    return [_per_minute(runs_of[mode]) / _per_minute(runs_of["page"]) for runs_of in rounds]


def write_report(work, doc_path):
    results = collect(work)
    doc = Path(doc_path)
    doc.parent.mkdir(parents=True, exist_ok=True)
    section = render_section(results)
    doc.write_text(replace_section(doc.read_text() if doc.exists() else "", section))
    print(section)


COMPARE_START, COMPARE_END = "<!-- loadtest-compare:start -->", "<!-- loadtest-compare:end -->"


def write_comparison(out, ref, sha, head, command, duration, connections, target):
    """Print and write (between its markers in `target`) the page rate of this checkout against REF's."""
    out = Path(out)
    rounds = sorted(int(p.stem.split("-")[1]) for p in out.glob("ref-*.txt"))
    rows, ratios = [], []
    for n in rounds:
        ref_run, this_run = (parse_wrk((out / f"{side}-{n}.txt").read_text()) for side in ("ref", "this"))
        ratio = _per_minute(this_run) / _per_minute(ref_run)
        ratios.append(ratio)
        errors = _errors(ref_run) + _errors(this_run)
        rows.append(f"| {n} | {_per_minute(ref_run):,.0f} | {_per_minute(this_run):,.0f} | {ratio:.2f} | "
                    f"{ref_run['p99_us'] / 1000:.1f} / {this_run['p99_us'] / 1000:.1f} ms | {errors} |")
    median = statistics.median(ratios)
    measured = datetime.fromtimestamp(max(p.stat().st_mtime for p in out.glob("*.txt")), timezone.utc)
    section = "\n".join([
        "## Against another version",
        "",
        f"Written by `scripts/loadtest_compare.sh`: `{command}`, measured {measured:%Y-%m-%d %H:%M} UTC. The page "
        f"run of scripts/loadtest.sh (`LOADTEST_PAGE_ONLY=1`, {duration} s, {connections} connections) of `{ref}` "
        f"(`{sha[:10]}`) and of this checkout (`{head}`), alternating, each on a stack of its own.",
        "",
        "| round | page views/min, ref | page views/min, this | this / ref | p99 ref / this | errors |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        f"Median ratio: **{median:.2f}**.",
    ])
    print(section)
    document = Path(target).read_text() if Path(target).exists() else ""
    Path(target).write_text(replace_section(document, section, COMPARE_START, COMPARE_END))


def parse_wrk(text) -> dict:
    """The RESULT line bench/visitors.lua prints, as ints."""
    line = next(line for line in text.splitlines() if line.startswith("RESULT "))
    return {key: int(value) for key, value in (item.split("=") for item in line.split()[1:])}


def main(argv):
    command, args = argv[0], argv[1:]
    if command == "visitors":
        make_visitors(args[0], int(args[1]), args[2])
    elif command == "campaigns":
        print(",".join(map(str, campaign_ids())))
    elif command == "cpu":
        print(json.dumps(cpu_ticks(dict(arg.split("=", 1) for arg in args))))
    elif command == "redis":
        print(json.dumps(redis_stats(args[0], args[1])))
    elif command == "wrk":
        print(json.dumps(parse_wrk(Path(args[0]).read_text())))
    elif command == "busy":
        print(f"{busy_percent():.0f}")
    elif command == "report":
        write_report(args[0], args[1])
    elif command == "compare":
        write_comparison(*args)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:] or ["help"])
