"""Flask commands: ingest, plans, demo-data."""

import json
import sys

import click
from flask import current_app

from models import IngestFile, IngestRun, Plan


def register(app):
    app.cli.add_command(ingest_command)
    app.cli.add_command(plans_command)
    app.cli.add_command(demo_data_command)
    app.cli.add_command(schedule_command)
    app.cli.add_command(status_command)


@click.command("ingest")
@click.argument("source", required=False)
@click.option("--enqueue", is_flag=True, help="Hand the run to an RQ worker instead of running it here.")
def ingest_command(source, enqueue):
    """Load SOURCE (a directory or s3://bucket/prefix; default INGEST_SOURCE) into the database."""
    from jobs.ingest import IngestBusy, request_ingest, run_ingest

    try:
        if enqueue:
            run = request_ingest(source, trigger="cli")
            click.echo(f"Queued ingest run #{run.id} (job {run.job_id}).")
            return
        with _ProgressBar() as bar:
            run_id = run_ingest(source, trigger="cli", on_progress=bar.update)
    except IngestBusy as exc:
        raise click.ClickException(str(exc)) from None
    current_app.extensions["plans"].invalidate()
    run = IngestRun.get_by_id(run_id)
    click.echo(format_run_summary(run))
    if run.status == IngestRun.FAILED:
        sys.exit(1)


@click.command("plans")
@click.option("--quarter", type=click.IntRange(1, 4))
@click.option("--campaign", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def plans_command(quarter, campaign, as_json):
    """Print the banner plans, by quarter and campaign."""
    query = Plan.select().order_by(Plan.quarter, Plan.campaign_id)
    if quarter:
        query = query.where(Plan.quarter == quarter)
    if campaign is not None:
        query = query.where(Plan.campaign_id == campaign)
    plans = [
        {"quarter": p.quarter, "campaign_id": p.campaign_id, "x": p.x, "scenario": p.scenario, "banner_ids": p.banner_id_list}
        for p in query
    ]
    if as_json:
        click.echo(json.dumps(plans))
        return
    for p in plans:
        click.echo(f"Q{p['quarter']} campaign {p['campaign_id']:>4}  X={p['x']:<4} {p['scenario']:<20} {p['banner_ids']}")


@click.command("demo-data")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--seed", default=2014, show_default=True, help="Same seed, same data.")
def demo_data_command(directory, seed):
    """Write a synthetic source to DIRECTORY: 4 quarters, ~50 campaigns, every rule branch, images."""
    from jobs.demo import write_demo_source

    summary = write_demo_source(directory, seed=seed)
    click.echo(f"Wrote demo source to {directory}: {summary}")


@click.command("schedule")
def schedule_command():
    """Register the scheduled ingest with rq-scheduler (idempotent: a fixed id replaces the old entry)."""
    from jobs.schedule import register_schedules, scheduler_for

    ctx = current_app.extensions["runtime"]
    job = register_schedules(scheduler_for(ctx), ctx.settings)
    click.echo(f"Scheduled {job.id}: {job.description}")


@click.command("status")
@click.option("--has-data", is_flag=True, help="Exit 0 when plans are loaded, 1 when not, printing nothing.")
def status_command(has_data):
    """Say what data is loaded."""
    from models import get_data_version

    plans = Plan.select().count()
    if has_data:
        sys.exit(0 if plans else 1)
    click.echo(f"data version {get_data_version()}, {plans} plans")


def format_run_summary(run) -> str:
    """The per-file table the CLI prints after a run."""
    lines = [f"Ingest run #{run.id}: {run.status}" + (f" - {run.error}" if run.error else "")]
    header = f"{'file':<22}{'read':>9}{'loaded':>9}{'dupl':>7}{'confl':>7}{'reject':>8}{'orphan':>8}  note"
    lines.append(header)
    for f in IngestFile.select().where(IngestFile.run == run).order_by(IngestFile.quarter.asc(nulls="last"), IngestFile.id):
        name = f"{f.quarter}/{f.name}" if f.quarter else f.name
        note = "unchanged" if f.unchanged else (f.error or "")
        lines.append(
            f"{name:<22}{f.rows_read:>9}{f.loaded:>9}{f.duplicates:>7}{f.conflicts:>7}{f.rejected:>8}{f.orphans:>8}  {note}"
        )
        for line, reason in f.sample_list[:5]:
            lines.append(f"{'':<24}line {line}: {reason}")
    return "\n".join(lines)


class _ProgressBar:
    """A click progress bar over the bytes of the source, shown while a foreground ingest runs."""

    def __enter__(self):
        self.bar, self.shown = None, 0
        return self

    def update(self, done, total, stage):
        if self.bar is None and total:
            self.bar = click.progressbar(length=total, label="Ingesting", file=sys.stderr, show_pos=False)
            self.bar.__enter__()
        if self.bar is not None:
            self.bar.label = stage or "Ingesting"
            self.bar.update(max(0, min(done, total) - self.shown))
            self.shown = min(done, total)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)
