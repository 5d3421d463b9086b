"""scripts/run.sh on a Redis it shares: it keeps to a namespace of its own and removes it on Ctrl-C."""

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import redis as redis_lib

from conftest import ROOT
from nginx_stack import free_port, require_program, wait_for

# What a deployment on the same Redis keeps there: run.sh must leave it exactly as it was.
DEPLOYMENT_SCHEDULE = "bannerservice-scheduled-ingest"
DEPLOYMENT_KEY = "bannerservice:data_version"


@pytest.fixture
def private_redis(tmp_path):
    """A redis-server of this test's own on a free port (the shared one is never flushed)."""
    server = require_program("redis-server")
    port = free_port()
    process = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis_lib.Redis(host="127.0.0.1", port=port, decode_responses=True)
    try:
        wait_for(lambda: _answers(client), "the private redis-server")
        yield f"redis://127.0.0.1:{port}/0", client
    finally:
        process.terminate()
        process.wait(timeout=20)


def _answers(client) -> bool:
    try:
        return client.ping()
    except redis_lib.ConnectionError:
        return False


def _scheduled(client):
    return set(client.zrange("rq:scheduler:scheduled_jobs", 0, -1))


def test_quickstart_ctrl_c_leaves_a_shared_redis_as_it_found_it(private_redis, tmp_path):
    url, client = private_redis
    client.zadd("rq:scheduler:scheduled_jobs", {DEPLOYMENT_SCHEDULE: time.time() + 3600})
    client.set(DEPLOYMENT_KEY, "7")
    before = {key: client.type(key) for key in client.keys("*")}
    bin_dir = Path(sys.executable).parent
    subprocess.run([bin_dir / "flask", "--app", "webapp", "demo-data", str(tmp_path / "demo"), "--rows", "2000"],
                   cwd=ROOT, check=True, capture_output=True, timeout=300,
                   env={**os.environ, "INSTANCE_DIR": str(tmp_path / "instance"), "REDIS_URL": url, "LOG_FILE": ""})
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_PREFIX", "QUEUE_NAME", "DATABASE_URL", "IMAGE_DIR", "LOG_FILE")}
    env.update({"REDIS_URL": url, "INSTANCE_DIR": str(tmp_path / "instance"), "INGEST_SOURCE": str(tmp_path / "demo"),
                "PORT": str(port), "WEB_WORKERS": "1", "PATH": f"{bin_dir}:{env['PATH']}"})
    output = open(tmp_path / "run.out", "wb")
    run = subprocess.Popen(["bash", "scripts/run.sh"], cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT,
                           start_new_session=True)
    try:
        wait_for(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2).status == 200,
                 "run.sh serving", seconds=240)
        ours = _scheduled(client) - {DEPLOYMENT_SCHEDULE}
        assert len(ours) == 2 and all(job.startswith("bannerservice-quickstart-") for job in ours), ours
        assert client.get(DEPLOYMENT_KEY) == "7" and client.keys("bannerservice-quickstart-*:*")
        wait_for(lambda: client.smembers("rq:workers"), "run.sh's worker")
        os.killpg(run.pid, signal.SIGINT)  # what Ctrl-C in its terminal sends
        assert run.wait(timeout=90) != 0
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    log = (tmp_path / "run.out").read_text(errors="replace")
    # rq's and rq-scheduler's own records that expire by themselves: a stopped worker's and a stopped
    # scheduler's (60 s after their death) and the worker's registry-cleaning lock (10 min).
    expiring = {key for key in client.keys("rq:*") if key not in before and 0 < client.ttl(key) <= 600}
    assert {key.split(":")[1] for key in expiring} <= {"worker", "scheduler_instance", "clean_groups"}, expiring
    after = {key: client.type(key) for key in client.keys("*") if key not in expiring}
    assert after == before, f"left behind: {sorted(set(after) - set(before))}\n{log[-3000:]}"
    assert _scheduled(client) == {DEPLOYMENT_SCHEDULE} and client.get(DEPLOYMENT_KEY) == "7"
