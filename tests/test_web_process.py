"""The web process (python -m webapp.serve) as an operator runs it: it starts over what a killed one left behind,
and its workers do not outlive it."""

import os
import signal
import socket
import subprocess
import sys

import pytest

from conftest import ROOT
from nginx_stack import nginx_and_web, require_program, status, statuses_during, wait_for, web_masters, web_workers

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the database plays no part here


@pytest.fixture
def web_env(worker_env, tmp_path):
    require_program("nginx")
    return {**worker_env, "INSTANCE_DIR": str(tmp_path / "instance"), "WEB_WORKERS": "2"}


def test_web_process_starts_over_the_stale_socket_a_killed_one_left(web_env, tmp_path):
    work = tmp_path / "stack"
    work.mkdir()
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(work / "web.sock"))  # bound, never listened on, closed: the file stays, as after a SIGKILL
    stale.close()
    with nginx_and_web(work, web_env) as (port, _):
        assert status(port, "/ping") == 200


def test_web_process_refuses_to_start_over_a_socket_another_one_serves(web_env, tmp_path):
    work = tmp_path / "stack"
    work.mkdir()
    with nginx_and_web(work, web_env) as (port, _):
        second = subprocess.run([sys.executable, "-m", "webapp.serve", "--bind", f"unix:{work / 'web.sock'}"],
                                cwd=ROOT, env=web_env, capture_output=True, text=True, timeout=60)
        assert second.returncode != 0 and "in use" in second.stderr + second.stdout
        assert status(port, "/ping") == 200  # the first one still serves on it


def test_web_process_workers_exit_when_it_is_killed(web_env, tmp_path):
    work = tmp_path / "stack"
    work.mkdir()
    with nginx_and_web(work, web_env) as (port, _):
        (master,) = web_masters(work)
        workers = web_workers(work)
        assert len(workers) == 2
        os.kill(master, signal.SIGKILL)
        try:
            wait_for(lambda: not any(_alive(pid) for pid in workers), "the workers of a killed web process to exit",
                     seconds=10)
        finally:
            for pid in filter(_alive, workers):
                os.kill(pid, signal.SIGKILL)


def test_web_process_recycles_its_workers_after_their_lifetime_while_views_keep_being_answered(web_env, tmp_path):
    """WEB_WORKER_LIFETIME (granian's minimum, 60 s): every worker is replaced, new before old, no view fails."""
    work = tmp_path / "stack"
    work.mkdir()
    with nginx_and_web(work, {**web_env, "WEB_WORKER_LIFETIME": "60"}) as (port, _):
        before = web_workers(work)
        statuses = statuses_during(lambda: status(port, "/ping"), lambda: wait_for(
            lambda: not set(web_workers(work)) & set(before) and len(web_workers(work)) == 2,
            "both workers recycled", seconds=90))
    assert len(statuses) > 100 and set(statuses) == {200}, sorted(set(statuses))


def _alive(pid) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
