"""The log under a hostile client: one bounded line per record, nothing a client sends starts a line,
a flood does not erase earlier records, and no process rotates the file (several would each rotate it)."""

import logging
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlencode

import pytest
import yaml
from hypothesis import given, settings as hsettings
from hypothesis import strategies as st

from conftest import REDIS_URL, ROOT
from jobs.logs import FORMAT, MAX_MESSAGE_CHARS, MAX_TRACEBACK_CHARS, PER_SECOND, FloodFilter, LineFormatter
from nginx_stack import nginx_and_web, require_program
from test_login_proxy import CSRF, Browser

# A record starts with its timestamp; a traceback's lines are indented.
RECORD_START = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ")
BIG_NAME = "a" * 1_000_000  # with the form's other fields, just under the app's 1 MB body limit
FORGED = "2026-12-02 10:00:00,000 INFO bannerservice.auth login user=admin addr=203.0.113.9"
# The longest line one sign-in may write: the message limit plus the timestamp, level and logger name.
MAX_LINE = MAX_MESSAGE_CHARS + 200


def _record(msg, args=(), exc_info=None, name="bannerservice.auth"):
    return logging.LogRecord(name, logging.WARNING, __file__, 1, msg, args, exc_info)


@hsettings(max_examples=200, deadline=None)
@given(st.text(max_size=3000), st.lists(st.one_of(st.text(max_size=3000), st.integers(), st.binary(max_size=3000)),
                                        max_size=4))
def test_log_formatter_writes_one_bounded_line_whatever_the_values(text, values):
    line = LineFormatter(FORMAT).format(_record("login failed user=%s" + " %s" * len(values), (text, *values)))
    assert "\n" not in line and "\r" not in line and "\u2028" not in line
    assert not any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 for c in line)
    assert len(line) <= MAX_LINE


def test_log_formatter_cuts_a_value_with_a_marker_and_escapes_line_breaks():
    line = LineFormatter(FORMAT).format(_record("login failed user=%s addr=%s", ("x" * 5000, "1.2.3.4\r\n" + FORGED)))
    assert "x" * 200 + "...[4800 more chars cut]" in line
    assert f"addr=1.2.3.4\\r\\n{FORGED}" in line
    assert "%d runs" % 7 in LineFormatter(FORMAT).format(_record("%d runs", (7,)))  # numbers stay numbers


def test_log_formatter_indents_a_traceback_and_escapes_what_it_quotes():
    try:
        raise ValueError("bad name\n" + FORGED + "\n" + "y" * 100_000)
    except ValueError:
        line = LineFormatter(FORMAT).format(_record("failed", exc_info=sys.exc_info()))
    first, *rest = line.split("\n")
    assert first.endswith("bannerservice.auth failed") and rest
    assert all(part.startswith("    ") for part in rest)
    assert len(line) <= MAX_TRACEBACK_CHARS + 500


def _login(client, username):
    page = client.get("/login").get_data(as_text=True)
    token = CSRF.search(page).group(1)
    return client.post("/login", data={"username": username, "password": "wrong-password-1", "csrf_token": token})


def _lines(path: Path):
    return path.read_text(encoding="utf-8", errors="replace").split("\n")[:-1]


def test_log_login_with_a_1mb_username_writes_one_short_line(client, settings_overrides):
    log_file = Path(settings_overrides["log_file"])
    before = log_file.stat().st_size if log_file.exists() else 0
    assert _login(client, BIG_NAME).status_code == 401
    written = log_file.read_text()[before:]
    assert written.count("\n") == 1 and "login failed user=" + "a" * 200 + "...[999800 more chars cut]" in written
    assert len(written) < MAX_LINE


def test_log_login_with_cr_lf_in_the_username_writes_no_forged_line(client, settings_overrides):
    log_file = Path(settings_overrides["log_file"])
    before = log_file.stat().st_size if log_file.exists() else 0
    assert _login(client, "mallory\r\n" + FORGED).status_code == 401
    written = log_file.read_text()[before:].split("\n")[:-1]
    assert len(written) == 1 and "login failed user=mallory\\r\\n2026-12-02" in written[0]
    assert not any(line.startswith(FORGED) for line in _lines(log_file))


def test_log_unhandled_error_with_a_newline_in_the_path_stays_one_record(app, client, settings_overrides):
    # Flask logs an unhandled exception with the request's path, through our handlers too.
    @app.get("/boom/<rest>")
    def boom(rest):
        raise RuntimeError("boom")

    app.config["PROPAGATE_EXCEPTIONS"] = False
    assert client.get("/boom/x%0A" + FORGED.replace(" ", "%20")).status_code == 500
    lines = _lines(Path(settings_overrides["log_file"]))
    error = [line for line in lines if "Exception on /boom/" in line]
    assert len(error) == 1 and RECORD_START.match(error[0]) and "x\\n2026-12-02" in error[0]
    assert all(RECORD_START.match(line) or line.startswith("    ") for line in lines)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """nginx → the web process with three workers, all writing one log file, as the README runs them."""
    require_program("nginx")
    work = tmp_path_factory.mktemp("logs")
    prefix = f"bstest:{uuid.uuid4().hex[:12]}:"
    log_file = work / "logs" / "bannerservice.log"
    env = dict(os.environ)
    env.update({
        "DATABASE_URL": f"sqlite:///{work / 'bannerservice.db'}", "REDIS_URL": REDIS_URL, "REDIS_PREFIX": prefix,
        "INSTANCE_DIR": str(work / "instance"), "IMAGE_DIR": str(work / "images"), "LOG_FILE": str(log_file),
        "SECRET_KEY": "logs-test", "QUEUE_NAME": f"{prefix}queue", "PYTHONPATH": str(ROOT), "WEB_WORKERS": "3",
        "TRUSTED_PROXY_COUNT": "1", "BANNERSERVICE_PASSWORD": "ada-secret-1",
    })
    bin_dir = Path(sys.executable).parent
    subprocess.run([bin_dir / "flask", "--app", "webapp", "users", "create", "ada", "--role", "admin"],
                   cwd=ROOT, env=env, check=True, capture_output=True, timeout=120)
    with nginx_and_web(work, env) as (port, _):
        yield port, log_file


def _post_login(browser, username):
    status, _, page = browser.request("GET", "/login")
    body = urlencode({"username": username, "password": "wrong-password-1", "csrf_token": CSRF.search(page).group(1)})
    return browser.request("POST", "/login", body, {"Content-Type": "application/x-www-form-urlencoded"})[0]


def test_log_flood_of_1mb_usernames_through_the_web_process_keeps_earlier_records(stack):
    port, log_file = stack
    assert Browser(port, "127.0.0.7").login("ada", "ada-secret-1")[0] == 302
    attacker = Browser(port, "127.0.0.8")
    statuses = [_post_login(attacker, f"{n}-{BIG_NAME}") for n in range(62)]
    assert set(statuses) <= {401, 429}
    statuses = [_post_login(attacker, f"{n}\r\n{FORGED}") for n in range(5)]
    lines = _lines(log_file)
    assert any("login user=ada addr=127.0.0.7" in line for line in lines)  # the earlier record survived
    assert not list(log_file.parent.glob("bannerservice.log.*"))  # nothing rotated
    assert log_file.stat().st_size < 70 * MAX_LINE
    assert all(RECORD_START.match(line) for line in lines) and not any(line.startswith(FORGED) for line in lines)
    assert sum("login failed user=" in line or "login slowed user=" in line for line in lines) >= 60


def test_log_file_moved_away_by_logrotate_is_reopened_by_every_worker(stack):
    port, log_file = stack
    rotated = log_file.with_name("bannerservice.log.1")
    log_file.rename(rotated)  # what logrotate does; nothing else in the app rotates the file
    size = rotated.stat().st_size
    names = [f"after-rotation-{n}" for n in range(30)]
    for n, name in enumerate(names):  # new connections: the three workers share them out
        assert _post_login(Browser(port, f"127.0.0.{10 + n}"), name) == 401
        time.sleep(0.12)  # under the flood filter's 10 of a message a second, even if one worker gets them all
    assert rotated.stat().st_size == size  # no worker kept writing to the old file
    text = log_file.read_text()
    assert all(f"user={name} " in text for name in names)
    rotated.unlink()


def test_log_compose_sends_app_logs_to_stdout_and_bounds_every_services_log():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for name, service in compose["services"].items():
        options = service.get("logging", {}).get("options", {})
        assert options.get("max-size") and options.get("max-file"), name
    assert compose["x-app"]["environment"]["LOG_FILE"] == ""  # Docker owns the app's logs and their rotation


def test_log_flood_filter_writes_ten_of_a_message_a_second_and_counts_the_rest():
    flood, formatter = FloodFilter(), LineFormatter(FORMAT)
    written = []
    for second, repeats in ((100.2, 25), (101.5, 3)):
        for n in range(repeats):
            record = _record("csrf rejected path=%s", (f"/p{n}",))
            record.created = second
            if flood.filter(record) and flood.filter(record):  # both handlers ask; the answer is the same
                written.append(formatter.format(record))
    other = _record("login failed user=%s", ("x",))
    other.created = 100.3
    assert flood.filter(other)  # another message has its own count
    assert len(written) == 13 and "dropped" not in "".join(written[:10])
    assert written[10].endswith("csrf rejected path=/p0 [15 more of this message dropped in an earlier second]")


def test_log_flood_filter_never_thins_the_jobs_records():
    """An ingest's or export's lines are started by the schedule or an admin, one run at a time, never by a
    client's request: all of them are kept, however many runs a process makes in a second (tests make many)."""
    flood = FloodFilter()
    for name in ("bannerservice.ingest", "bannerservice.export"):
        records = [_record("run=%s quarter=%s loaded", (n, 1), name=name) for n in range(25)]
        for record in records:
            record.created = 200.5
        assert all(flood.filter(record) for record in records), name


def _fresh_flood_windows():
    """Forget the process's flood counts: an earlier test's sign-ins in this same second would count here."""
    for handler in logging.getLogger("bannerservice").handlers:
        for log_filter in handler.filters:
            if isinstance(log_filter, FloodFilter):
                log_filter.windows.clear()


def test_log_refused_sign_ins_write_at_most_ten_lines_a_second(client, settings_overrides):
    from webapp import auth

    _fresh_flood_windows()
    for _ in range(auth.FREE_ATTEMPTS + 1):  # the free attempts and the first after them: wrong passwords
        _login(client, "eve")
    started = time.monotonic()
    statuses = [_login(client, "eve").status_code for _ in range(60)]
    seconds = time.monotonic() - started
    assert statuses.count(429) >= 50  # an attempt whose delay has passed is checked (401)
    slowed = [line for line in _lines(Path(settings_overrides["log_file"])) if "login slowed user=eve" in line]
    assert 10 <= len(slowed) <= PER_SECOND * (int(seconds) + 2)
