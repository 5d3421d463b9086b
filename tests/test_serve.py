"""The web process's settings (webapp/serve.py): what granian is started with, from the environment."""

import multiprocessing
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

from webapp.serve import server_options


def test_serve_defaults_one_python_thread_per_worker_and_a_worker_per_core():
    options = server_options({})
    assert options["workers"] == multiprocessing.cpu_count()
    assert options["blocking_threads"] == 1
    assert (options["address"], options["port"]) == ("127.0.0.1", 8000)
    assert options["respawn_failed_workers"] is True and options["workers_lifetime"] is None
    assert options["log_access"] is False and options["pid_file"] is None


def test_serve_unix_socket_bind_is_writable_for_nginx():
    options = server_options({}, bind="unix:/run/bannerservice/web.sock", pid_file="/run/web.pid")
    assert options["uds"] == Path("/run/bannerservice/web.sock") and options["uds_permissions"] == 0o666
    assert "address" not in options and options["pid_file"] == Path("/run/web.pid")


def test_serve_reads_bind_workers_threads_lifetime_and_access_log_from_the_environment():
    options = server_options({"BIND": "[::]:9000", "WEB_WORKERS": "4", "WEB_THREADS": "2",
                              "WEB_WORKER_LIFETIME": "3600", "ACCESS_LOG": "1", "LOG_LEVEL": "WARNING"})
    assert (options["address"], options["port"]) == ("::", 9000)
    assert (options["workers"], options["blocking_threads"], options["workers_lifetime"]) == (4, 2, 3600)
    assert options["log_access"] is True and options["log_level"].value == "warning"


def test_serve_command_line_bind_wins_over_the_environment():
    assert server_options({"BIND": "0.0.0.0:8000"}, bind="127.0.0.1:8123")["port"] == 8123


@pytest.mark.parametrize("name, value, says", [("WEB_WORKER_LIFETIME", "30", "at least 60"),
                                               ("LOG_LEVEL", "loud", "one of critical")])
def test_serve_refuses_settings_granian_would_refuse_before_building_the_app(name, value, says):
    with pytest.raises(ValueError, match=says):
        server_options({name: value})
    started = subprocess.run([sys.executable, "-m", "webapp.serve"], cwd=ROOT, env={"PATH": "/usr/bin", name: value},
                             capture_output=True, text=True, timeout=60)
    assert started.returncode == 2 and says in started.stderr


def test_serve_empty_log_level_is_info():
    assert server_options({"LOG_LEVEL": ""})["log_level"].value == "info"
