"""Flask commands: ingest, plans, demo-data."""

import json
import sys

import click
from flask import current_app
from flask.cli import with_appcontext

from models import IngestFile, IngestRun, Plan


def register(app):
    app.cli.add_command(ingest_command)
    app.cli.add_command(plans_command)
    app.cli.add_command(demo_data_command)
    app.cli.add_command(schedule_command)
    app.cli.add_command(scheduler_command)
    app.cli.add_command(status_command)
    app.cli.add_command(users_command)
    app.cli.add_command(bootstrap_admin_command)
    from webapp import live_cli

    live_cli.register(app)


@click.command("ingest")
@with_appcontext
@click.argument("source", required=False)
@click.option("--enqueue", is_flag=True, help="Hand the run to an RQ worker instead of running it here.")
@click.option("--with-live", "with_live", is_flag=True, help="Add the exported live batches of the last --live-hours hours.")
@click.option("--live-hours", type=click.IntRange(1, 24 * 31), help="Hours of live batches to add (default LIVE_HOURS, or 24).")
@click.option("--accept-rejects", "accept_rejects", is_flag=True,
              help="Load quarters whose files reject more rows than INGEST_REJECT_LIMIT_PERCENT (the history says so).")
def ingest_command(source, enqueue, with_live, live_hours, accept_rejects):
    """Load SOURCE (a directory or s3://bucket/prefix; default INGEST_SOURCE) into the database."""
    from jobs.ingest import IngestBusy, request_ingest, run_ingest

    hours = (live_hours or current_app.extensions["settings"].live_hours or 24) if with_live else 0
    try:
        if enqueue:
            run = request_ingest(source, trigger="cli", live_hours=hours, accept_rejects=accept_rejects)
            click.echo(f"Queued ingest run #{run.id} (job {run.job_id}).")
            return
        with _ProgressBar() as bar:
            run_id = run_ingest(source, trigger="cli", on_progress=bar.update, live_hours=hours, accept_rejects=accept_rejects)
    except IngestBusy as exc:
        raise click.ClickException(str(exc)) from None
    current_app.extensions["plans"].invalidate()
    run = IngestRun.get_by_id(run_id)
    click.echo(format_run_summary(run))
    if run.status == IngestRun.FAILED:
        sys.exit(1)


@click.command("plans")
@with_appcontext
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
@with_appcontext
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--seed", default=2014, show_default=True, help="Same seed, same data.")
@click.option("--campaigns", default=50, show_default=True, type=click.IntRange(1), help="Campaigns 1..N.")
@click.option("--banners", default=200, show_default=True, type=click.IntRange(25), help="Banner ids 100.. (M of them).")
@click.option("--rows", type=click.IntRange(1000), help="About this many CSV rows, in the reference data's mix (default: the demo's volume per campaign).")
@click.option("--images/--no-images", default=True, show_default=True, help="Write a PNG per banner.")
def demo_data_command(directory, seed, campaigns, banners, rows, images):
    """Write a synthetic source to DIRECTORY: 4 quarters, every rule branch, faults, images."""
    from jobs.demo import write_demo_source

    summary = write_demo_source(directory, seed=seed, campaigns=campaigns, banners=banners, rows=rows, images=images)
    click.echo(f"Wrote demo source to {directory}: {summary}")


@click.command("schedule")
@with_appcontext
def schedule_command():
    """Register the scheduled ingest with rq-scheduler (idempotent: a fixed id replaces the old entry)."""
    from jobs.schedule import register_schedules, scheduler_for

    ctx = current_app.extensions["runtime"]
    job = register_schedules(scheduler_for(ctx), ctx.settings)
    click.echo(f"Scheduled {job.id}: {job.description}")


@click.command("scheduler")
@with_appcontext
@click.option("--interval", default=10.0, show_default=True, help="Seconds between looks for due jobs.")
@click.option("--check-seconds", default=60.0, show_default=True, help="Seconds between checks that our schedules exist.")
def scheduler_command(interval, check_seconds):
    """Run rq-scheduler, registering the schedules at start and again whenever Redis lost them."""
    from jobs.schedule import run_scheduler

    run_scheduler(current_app.extensions["runtime"], interval=interval, check_seconds=check_seconds)


@click.command("status")
@with_appcontext
@click.option("--has-data", is_flag=True, help="Exit 0 when plans are loaded, 1 when not, printing nothing.")
def status_command(has_data):
    """Say what data is loaded."""
    from models import get_data_version

    plans = Plan.select().count()
    if has_data:
        sys.exit(0 if plans else 1)
    click.echo(f"data version {get_data_version()}, {plans} plans")


@click.group("users")
def users_command():
    """Manage dashboard users."""


@users_command.command("create")
@with_appcontext
@click.argument("name")
@click.option("--role", type=click.Choice(["admin", "manager"]), required=True)
@click.option("--password", envvar="BANNERSERVICE_PASSWORD", prompt=True, hide_input=True,
              confirmation_prompt=True, help="Prompted for when not given; scripts may set BANNERSERVICE_PASSWORD.")
def users_create_command(name, role, password):
    """Create user NAME with a role; the password is stored hashed."""
    from webapp.auth import UserError, create_user

    try:
        user = create_user(name, password, role)
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Created {user.role} {user.username!r}.")


@users_command.command("list")
@with_appcontext
def users_list_command():
    """List users and their roles."""
    from models import User

    for user in User.select().order_by(User.username):
        click.echo(f"{user.username:<24}{user.role}")


@click.command("bootstrap-admin")
@with_appcontext
def bootstrap_admin_command():
    """Create user `admin` with a generated password, printed once, when no admin exists yet."""
    from webapp.auth import bootstrap_admin

    created = bootstrap_admin()
    if created is None:
        return
    user, password = created
    line = f"Dashboard admin created: user {user.username!r}, password {password}  (shown only now)"
    rule = "+" + "-" * (len(line) + 2) + "+"
    click.echo("\n".join(["", rule, f"| {line} |", rule, ""]))  # stdout: run.sh discards stderr


def format_run_summary(run) -> str:
    """The per-file table the CLI prints after a run."""
    files = list(
        IngestFile.select().where(IngestFile.run == run).order_by(IngestFile.quarter.asc(nulls="last"), IngestFile.id)
    )
    names = [f"{f.quarter}/{f.name}" if f.quarter and not f.name.startswith("live/") else f.name for f in files]
    width = max([len(name) for name in names] + [20]) + 2
    lines = [
        f"Ingest run #{run.id}: {run.status}" + (f" - {run.error}" if run.error else ""),
        f"{'file':<{width}}{'read':>9}{'loaded':>9}{'dupl':>7}{'confl':>7}{'reject':>8}{'orphan':>8}  note",
    ]
    for name, f in zip(names, files):
        note = "unchanged" if f.unchanged else (f.error or "")
        lines.append(
            f"{name:<{width}}{f.rows_read:>9}{f.loaded:>9}{f.duplicates:>7}{f.conflicts:>7}{f.rejected:>8}{f.orphans:>8}  {note}"
        )
        for where, reason in f.sample_list[:5]:
            where = f"line {where}" if isinstance(where, int) else where  # images name their file
            lines.append(f"{'':<{width + 2}}{where}: {reason}")
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
