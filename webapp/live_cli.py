"""Flask commands for live events: export-events, api-keys, banners set-landing."""

import click
from flask.cli import with_appcontext

from jobs import runtime
from models import Banner, bump_data_version, db


def register(app):
    app.cli.add_command(export_events_command)
    app.cli.add_command(api_keys_command)
    app.cli.add_command(banners_command)


@click.command("export-events")
@with_appcontext
def export_events_command():
    """Drain the live event stream into CSV batches under <LIVE_ROOT or INGEST_SOURCE>/live/ now."""
    from live.export import ExportBusy, export_events
    from models import ExportRun

    try:
        run = ExportRun.get_by_id(export_events())
    except ExportBusy as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Export #{run.id}: {run.status}, {run.events} events into {len(run.file_list)} folders.")


@click.group("api-keys")
def api_keys_command():
    """Advertisers' keys for POST /api/conversions."""


@api_keys_command.command("create")
@with_appcontext
@click.argument("advertiser")
def api_keys_create_command(advertiser):
    """Create a key for ADVERTISER and print it once (only its hash is stored)."""
    from webapp.clicks import create_api_key

    click.echo(create_api_key(advertiser))


@click.group("banners")
def banners_command():
    """Banner settings."""


@banners_command.command("set-landing")
@with_appcontext
@click.argument("banner_id", type=int)
@click.argument("url")
def banners_set_landing_command(banner_id, url):
    """Send clicks on BANNER_ID to URL (an absolute http(s) URL or a path on this site)."""
    from webapp.urls import is_safe_landing_url

    if not is_safe_landing_url(url):
        raise click.BadParameter("use an absolute http(s) URL or a path starting with /", param_hint="URL")
    with db.atomic():
        Banner.insert(id=banner_id, landing_url=url).on_conflict(
            conflict_target=[Banner.id], update={Banner.landing_url: url}
        ).execute()
        version = bump_data_version()  # web processes read landing URLs with the plans: reload them
    runtime.publish_data_version(runtime.context(), version)
    click.echo(f"Clicks on banner {banner_id} now land on {url}")
