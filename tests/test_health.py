"""GET /healthz with its dependencies up and down, and the /ping baseline."""

import socket

import pytest

from conftest import write_source


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_healthz_with_everything_up_is_200_with_versions(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok"
    assert body["database"]["ok"] and body["redis"]["ok"]
    assert body["data_version"]["database"] == 0
    assert response.headers["Cache-Control"] == "no-store"


def test_healthz_reports_the_loaded_data_version(app, client, tmp_path):
    from jobs.ingest import run_ingest

    source = write_source(tmp_path / "src", {q: {"impressions": "11,1\n12,1\n"} for q in (1, 2, 3, 4)})
    with app.app_context():
        run_ingest(str(source), trigger="cli")
    app.extensions["plans"].invalidate()
    versions = client.get("/healthz").get_json()["data_version"]
    assert versions["database"] == versions["redis"] == versions["serving"] > 0


def test_healthz_with_redis_down_is_503_naming_redis(settings_overrides):
    from webapp import create_app

    app = create_app({**settings_overrides, "redis_url": f"redis://127.0.0.1:{_closed_port()}/0"})
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "unavailable"
    assert body["redis"]["ok"] is False and "Connection" in body["redis"]["error"]
    assert body["database"]["ok"] is True


def test_healthz_with_database_down_is_503_naming_the_database(settings_overrides):
    from webapp import create_app

    app = create_app(settings_overrides)
    url = f"postgresql://postgres@127.0.0.1:{_closed_port()}/test?connect_timeout=1"
    from models import init_db

    with pytest.raises(Exception):
        init_db(url)  # binds the handle to a server that is not there
    try:
        response = app.test_client().get("/healthz")
    finally:
        init_db(settings_overrides["database_url"])
    assert response.status_code == 503
    body = response.get_json()
    assert body["database"]["ok"] is False and body["redis"]["ok"] is True


def test_ping_is_plain_text_and_sets_no_cookie(client):
    response = client.get("/ping")
    assert response.status_code == 200 and response.data == b"pong\n"
    assert "Set-Cookie" not in response.headers
