"""Settings come from the environment, one variable per field, with clear errors."""

import pytest

from config import Settings, load_settings


def test_load_settings_reads_each_field_from_its_capitalised_variable():
    settings = load_settings({"DATABASE_URL": "postgresql://x/y", "PLAN_REFRESH_SECONDS": "0.5", "LIVE_HOURS": "6", "EVENTS_ENABLED": "no"})
    assert settings.database_url == "postgresql://x/y"
    assert settings.plan_refresh_seconds == 0.5 and settings.live_hours == 6 and settings.events_enabled is False


def test_load_settings_empty_variables_keep_the_defaults():
    assert load_settings({"REDIS_URL": "", "SESSION_LIFETIME_MINUTES": ""}) == load_settings({})
    assert Settings().session_lifetime_minutes == 30 and Settings().ingest_cron == "0 */12 * * *"


@pytest.mark.parametrize("name, value", [("LIVE_HOURS", "three"), ("EVENTS_ENABLED", "maybe"), ("PLAN_REFRESH_SECONDS", "soon")])
def test_load_settings_bad_value_names_the_variable(name, value):
    with pytest.raises(ValueError, match=name):
        load_settings({name: value})


def test_load_settings_overrides_win_over_the_environment():
    assert load_settings({"QUEUE_NAME": "a"}, queue_name="b").queue_name == "b"
