"""A live dashboard (the web process + the demo data) and Debian's Chromium driven by Playwright."""

import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from test_auth import PASSWORDS, users  # noqa: F401  (users: admin ada, manager mel)

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="session")
def playwright():
    """Playwright, once per run: its sync API runs one event loop per thread, so a second
    sync_playwright() while this one lives fails every test that asks for it."""
    if not Path(CHROMIUM).exists():
        message = f"Chromium not found at {CHROMIUM}: apt-get install chromium (scripts/test.sh does)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as running:
        yield running


@pytest.fixture(scope="session")
def browser(playwright):
    """Chromium, headless; missing Chromium fails the run in CI and skips it elsewhere."""
    browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15000)
    yield page
    context.close()


@pytest.fixture
def database_url(tmp_path):
    """SQLite only: these tests drive what a person sees and does; every query the pages run is also tested on
    PostgreSQL by the tests of the app over HTTP (tests/test_admin*.py), at half the cost of a second browser run."""
    return f"sqlite:///{tmp_path / 'test.db'}"


@pytest.fixture
def settings_overrides(settings_overrides, demo_source):
    return {**settings_overrides, "ingest_source": str(demo_source)}


@pytest.fixture
def server_env(worker_env, demo_source):
    return {**worker_env, "INGEST_SOURCE": str(demo_source)}


@pytest.fixture
def loaded(app, demo_source):
    from jobs.ingest import run_ingest

    with app.app_context():
        run_ingest(str(demo_source), trigger="cli")


@pytest.fixture
def live_server(app, users, server_env, tmp_path):  # noqa: F811
    """The web process (webapp.serve) serving this test's deployment; yields its base URL."""
    port = _free_port()
    log = open(tmp_path / "web.log", "wb")
    process = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "python"), "-m", "webapp.serve", "--bind", f"127.0.0.1:{port}"],
        env={**server_env, "WEB_WORKERS": "2", "WEB_THREADS": "4"}, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(base + "/login", process, tmp_path / "web.log")
        yield base
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


@pytest.fixture
def start_worker(server_env, settings_overrides, tmp_path):
    """A function that starts an RQ worker on this test's queue; it is stopped after the test."""
    processes = []

    def start():
        log = open(tmp_path / "worker.log", "ab")
        processes.append(subprocess.Popen(
            [str(ROOT / ".venv" / "bin" / "rq"), "worker", "--url", settings_overrides["redis_url"],
             settings_overrides["queue_name"]],
            env=server_env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        ))

    yield start
    for process in processes:
        process.terminate()
        process.wait(timeout=20)


def sign_in(page, base, username):
    page.goto(base + "/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORDS[username])
    page.click("button[type=submit]")
    page.wait_for_url(base + "/admin/")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_up(url, process, log_path, seconds=30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the web process exited: {log_path.read_text()}")
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"the web process did not answer within {seconds} s: {log_path.read_text()}")
