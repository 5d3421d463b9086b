"""The web process's settings (webapp/serve.py): what granian is started with, from the environment."""

import multiprocessing
from pathlib import Path

from webapp.serve import server_options


def test_serve_defaults_one_python_thread_per_worker_and_a_worker_more_than_the_cores():
    options = server_options({})
    assert options["workers"] == multiprocessing.cpu_count() + 1
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
