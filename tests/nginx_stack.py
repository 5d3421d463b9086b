"""nginx, rendered from the project's template, in front of the web process (webapp.serve): started for a test module,
always stopped."""

import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis as redis_lib

from conftest import REDIS_URL, ROOT

sys.path.insert(0, str(ROOT / "scripts"))
from render_nginx import render_file  # noqa: E402


def require_program(program):
    """The path of `program`; a missing one fails the test under CI (scripts/test.sh installs it) and skips it elsewhere."""
    path = shutil.which(program) or shutil.which(program, path="/usr/sbin:/usr/local/sbin")
    if path:
        return path
    message = f"{program} is not installed (scripts/test.sh installs it: apt-get install {program})"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(check, what, seconds=20):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@contextmanager
def nginx_and_web(work: Path, env: dict, tls=None):
    """(port, the values nginx.conf was rendered with) of nginx → the web process run with `env` in `work`.

    With `tls` (a tests/tls.py TestCA) nginx listens with HTTPS only, on its certificate.
    Afterwards both are stopped and the keys under env's REDIS_PREFIX deleted, whatever happened.
    """
    nginx = require_program("nginx")
    sock = work / "web.sock"
    web = subprocess.Popen([sys.executable, "-m", "webapp.serve", "--bind", f"unix:{sock}"], cwd=ROOT, env=env,
                           stdout=open(work / "web.log", "wb"), stderr=subprocess.STDOUT)
    port = free_port()
    run_dir = work / "nginx"
    values = render_file(run_dir / "nginx.conf", {
        "LISTEN": f"127.0.0.1:{port}", "APP_UPSTREAM": f"unix:{sock}", "IMAGE_DIR": env["IMAGE_DIR"],
        "RUN_DIR": str(run_dir), "LOG_DIR": str(run_dir), "NGINX_WORKERS": "1",
        # pytest's temp folders are private to their owner, so root-started workers stay root here.
        "NGINX_USER": "root",
    })
    if tls is not None:
        _enable_tls(run_dir / "nginx.conf", tls)
    server = subprocess.Popen([nginx, "-p", str(run_dir), "-c", str(run_dir / "nginx.conf"), "-g", "daemon off;"],
                              stdout=subprocess.DEVNULL, stderr=open(work / "nginx.stderr", "wb"))
    try:
        wait_for(lambda: status(port, "/ping", tls) == 200, "nginx and the web process")
        yield port, values
    finally:
        for process in (server, web):
            process.send_signal(signal.SIGTERM)
        for process in (server, web):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        client = redis_lib.Redis.from_url(env.get("REDIS_URL", REDIS_URL))
        keys = list(client.scan_iter(f"{env['REDIS_PREFIX']}*", count=1000))
        if keys:
            client.delete(*keys)


def _enable_tls(conf: Path, tls):
    """The rendered nginx.conf with its server listening on HTTPS (the template itself stays plain HTTP)."""
    text, count = re.subn(r"listen (\S+) backlog=(\d+);",
                          rf"listen \1 ssl backlog=\2;\n        ssl_certificate {tls.cert};"
                          rf"\n        ssl_certificate_key {tls.key};", conf.read_text())
    assert count == 1, "nginx.conf's listen line changed: update nginx_stack._enable_tls"
    conf.write_text(text)


def status(port, path, tls=None) -> int:
    if tls is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    else:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=5, context=tls.client_context())
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


def web_masters(work=None) -> list[int]:
    """Pids of the web processes this test process started (with their socket under `work`, when given)."""
    return sorted(pid for pid, (parent, cmdline) in _processes().items()
                  if parent == os.getpid() and b"webapp" in cmdline and (work is None or str(work).encode() in cmdline))


def web_workers(work=None) -> list[int]:
    """Pids of those web processes' workers (granian titles them after the master: webapp:create_app)."""
    masters = set(web_masters(work))
    return sorted(pid for pid, (parent, _) in _processes().items() if parent in masters)


def _processes() -> dict:
    """{pid: (parent pid, command line)} of the processes now running."""
    processes = {}
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit():
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                processes[int(entry.name)] = (parent, (entry / "cmdline").read_bytes())
        except OSError:
            continue
    return processes


def statuses_during(get_status, wait):
    """The statuses of requests made one after another, by `get_status()`, for as long as `wait()` runs."""
    statuses, stop = [], threading.Event()

    def request_until_stopped():
        while not stop.is_set():
            statuses.append(get_status())
            time.sleep(0.02)

    requester = threading.Thread(target=request_until_stopped)
    requester.start()
    try:
        wait()
    finally:
        stop.set()
        requester.join()
    return statuses
