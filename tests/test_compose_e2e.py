"""The production stack under a real Docker engine: docker-compose.yml built and started from a clean state,
then used only through the ports it publishes on 127.0.0.1.

scripts/test.sh sets up the engine and the Debian stand-in images (scripts/docker-standins.sh) and names their
variables in COMPOSE_STANDINS_ENV; COMPOSE_E2E_OFFICIAL=1 runs the same test on the official images instead.
"""

import hashlib
import http.cookiejar
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest

from conftest import ROOT

pytestmark = pytest.mark.compose

STANDINS_OVERRIDE = ROOT / "tests" / "compose.standins.yml"
SLOT = re.compile(r'data-campaign-id="(\d+)" data-quarter="(\d)".*?data-banner-id="(\d+)"', re.S)
SUCCEEDED = ("succeeded", "succeeded with rejects")
APP_SERVICES = ("web", "worker", "scheduler", "minio-init")


def _images_env() -> dict:
    """The image variables for compose: the stand-ins' env file, or nothing for the official images."""
    if os.environ.get("COMPOSE_E2E_SKIP"):
        pytest.skip(os.environ["COMPOSE_E2E_SKIP"])
    if os.environ.get("COMPOSE_E2E_OFFICIAL") == "1":
        return {}
    path = os.environ.get("COMPOSE_STANDINS_ENV")
    if not path:
        pytest.skip("no Docker engine set up for the compose test: run it through scripts/test.sh, which sets up "
                    "the engine and stand-in images (scripts/docker-standins.sh), or set COMPOSE_E2E_OFFICIAL=1")
    return dict(line.split("=", 1) for line in Path(path).read_text().splitlines() if "=" in line)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(check, what, seconds, every=1.0):
    """The first true value of check() within `seconds`; fails naming `what` and the last error otherwise."""
    deadline, last = time.monotonic() + seconds, None
    while True:
        try:
            value = check()
            if value:
                return value
        except (OSError, urllib.error.URLError, AssertionError, ValueError) as exc:
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds} s waiting for {what}" + (f"; last error: {last!r}" if last else ""))
        time.sleep(every)


class Compose:
    """One compose project of docker-compose.yml: the `docker compose` and `docker` commands it needs."""

    def __init__(self, project, env_file, standins, profiles=()):
        self.project, self.env_file = project, env_file
        files = ["-f", str(ROOT / "docker-compose.yml")] + (["-f", str(STANDINS_OVERRIDE)] if standins else [])
        self.base = ["docker", "compose", "-p", project, "--env-file", str(env_file), *files,
                     *[arg for p in profiles for arg in ("--profile", p)]]
        self.values = dict(line.split("=", 1) for line in env_file.read_text().splitlines()
                           if "=" in line and not line.startswith("#"))
        # Only our variables reach compose: a DATABASE_URL or REDIS_URL of the test run must not leak in.
        self.proc_env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "DOCKER_HOST", "DOCKER_CONFIG")}

    def run(self, *args, timeout=300, check=True):
        result = subprocess.run([*self.base, *args], capture_output=True, text=True, timeout=timeout,
                                cwd=ROOT, env=self.proc_env)
        if check and result.returncode != 0:
            raise AssertionError(f"docker compose {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}\n{self.diagnostics()}")
        return result

    def up(self):
        self.run("up", "-d", "--wait", "--wait-timeout", "240", timeout=420)

    def diagnostics(self) -> str:
        """What the containers say, for a failure message."""
        ps = subprocess.run([*self.base, "ps", "-a"], capture_output=True, text=True, timeout=60, cwd=ROOT, env=self.proc_env)
        logs = subprocess.run([*self.base, "logs", "--no-color", "--tail", "30"], capture_output=True, text=True,
                              timeout=60, cwd=ROOT, env=self.proc_env)
        return f"--- docker compose ps -a\n{ps.stdout}\n--- logs (last 30 lines each)\n{logs.stdout[-8000:]}"

    def containers(self, service, all=False) -> list:
        ids = self.run("ps", *(["-a"] if all else []), "-q", service).stdout.split()
        return sorted(ids, key=lambda c: self.inspect(c, "{{.Name}}"))

    def inspect(self, container, template) -> str:
        return docker("inspect", "-f", template, container).strip()

    def exec(self, service, *command, env=None, timeout=120):
        extra = [arg for k, v in (env or {}).items() for arg in ("-e", f"{k}={v}")]
        return self.run("exec", "-T", *extra, service, *command, timeout=timeout).stdout

    def logs(self, service) -> str:
        return self.run("logs", "--no-color", service).stdout

    def leftovers(self) -> dict:
        label = f"label=com.docker.compose.project={self.project}"
        return {kind: docker(kind, "ls", *(["-a"] if kind == "container" else []), "-q", "--filter", label).split()
                for kind in ("container", "volume", "network")}


def docker(*args, timeout=120) -> str:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"docker {' '.join(args)} failed: {result.stderr}"
    return result.stdout


class Visitor:
    """A browser of our own: keeps its cookies, talks only to the published nginx port on 127.0.0.1."""

    def __init__(self, port, agent):
        self.base = f"http://127.0.0.1:{port}"
        self.agent = agent
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                                  urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def get(self, path, data=None, timeout=10):
        """(status, body text); a form POST when `data` is given. Redirects are followed."""
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        request = urllib.request.Request(self.base + path, data=body, headers={"User-Agent": self.agent})
        try:
            with self.opener.open(request, timeout=timeout) as response:
                return response.status, response.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode("utf-8", "replace")

    def csrf(self, path) -> str:
        status, body = self.get(path)
        assert status == 200, f"GET {path}: {status}"
        return re.search(r'name="csrf_token" value="([^"]+)"', body).group(1)

    def sign_in(self, username, password):
        status, body = self.get("/login", {"username": username, "password": password, "csrf_token": self.csrf("/login")})
        said = re.search(r'class="error-message">([^<]*)<', body)
        assert status == 200 and "/logout" in body, f"sign-in of {username} failed: {status} {said.group(1) if said else body[:300]}"


@pytest.fixture(scope="module")
def images_env():
    env = _images_env()
    if not shutil.which("docker") or subprocess.run(["docker", "compose", "version"], capture_output=True).returncode:
        pytest.fail("COMPOSE_STANDINS_ENV is set but `docker compose` does not run here")
    return env


def _stack(tmp_path_factory, images_env, name, postgres=False):
    """A fresh compose project of docker-compose.yml, built and started, with secrets from scripts/docker-env.sh
    and free ports; always taken down with its volumes afterwards, whatever happened."""
    work = tmp_path_factory.mktemp(name)
    env_file = work / "compose.env"
    subprocess.run(["bash", str(ROOT / "scripts" / "docker-env.sh"), str(env_file)], check=True, capture_output=True)
    settings = {**images_env, "HTTP_BIND": "127.0.0.1", "HTTP_PORT": _free_port(), "S3_PORT": _free_port(),
                "S3_CONSOLE_PORT": _free_port(), "WEB_REPLICAS": 2,
                # One image per checkout, so worktrees testing at once do not replace each other's code.
                "APP_IMAGE": f"bannerservice-e2e:{hashlib.sha256(str(ROOT).encode()).hexdigest()[:12]}"}
    if postgres:
        password = re.search(r"^POSTGRES_PASSWORD=(.*)$", env_file.read_text(), re.M).group(1)
        settings["DATABASE_URL"] = f"postgresql://bannerservice:{password}@postgres:5432/bannerservice"
    with env_file.open("a") as out:
        out.writelines(f"{k}={v}\n" for k, v in settings.items())
    compose = Compose(f"bse2e-{name}-{uuid.uuid4().hex[:8]}", env_file, standins=bool(images_env),
                      profiles=("postgres",) if postgres else ())
    try:
        built = compose.run("build", "--progress", "plain", timeout=900)
        # The package builds without setuptools' warnings, in the image as locally (tests/test_compose.py).
        assert not re.findall(r"\b\w+Warning\b.*", built.stdout + built.stderr)
        compose.up()
        yield compose
    finally:
        compose.run("down", "-v", "--remove-orphans", timeout=300, check=False)


@pytest.fixture(scope="module")
def stack(tmp_path_factory, images_env):
    yield from _stack(tmp_path_factory, images_env, "sqlite")


@pytest.fixture(scope="module")
def admin(stack):
    """(username, password) of an admin created in the running stack."""
    password = uuid.uuid4().hex
    stack.exec("web", "flask", "--app", "webapp", "users", "create", "e2e-admin", "--role", "admin",
               env={"BANNERSERVICE_PASSWORD": password})
    return "e2e-admin", password


def _visitor(compose, name="visitor"):
    return Visitor(compose.values["HTTP_PORT"], f"bannerservice-e2e-{name}-{uuid.uuid4().hex}")


def check_served_and_ingested(compose):
    """Step 1: /healthz through nginx; the init service filled the S3 bucket and the worker ingested it."""
    visitor = _visitor(compose)

    def ingested():
        status, body = visitor.get("/healthz")
        health = json.loads(body)
        return status == 200 and health["status"] == "ok" and (health["data_version"]["serving"] or 0) >= 4 and health

    health = _wait_for(ingested, "/healthz through nginx to report the demo data's 4 quarters served", 120)
    assert health["data_version"]["database"] == health["data_version"]["redis"]

    import boto3
    from botocore.config import Config

    s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{compose.values['S3_PORT']}", region_name="us-east-1",
                      aws_access_key_id=compose.values["MINIO_ROOT_USER"],
                      aws_secret_access_key=compose.values["MINIO_ROOT_PASSWORD"],
                      config=Config(s3={"addressing_style": "path"}))
    keys = {o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket="banners", Prefix="demo/")
            for o in page.get("Contents", [])}
    assert {f"demo/{q}/{f}.csv" for q in range(1, 5) for f in ("impressions", "clicks", "conversions")} <= keys
    assert sum(k.startswith("demo/images/") for k in keys) >= 100

    worker_log = compose.logs("worker")
    assert re.search(r"run=1 end status=succeeded", worker_log), f"the worker did not run the first ingest:\n{worker_log[-3000:]}"
    # nginx serves the images ingest published on the shared volume.
    status, body = visitor.get("/campaigns/1")
    image = re.search(r'<img src="(/images/[^"]+)"', body).group(1)
    request = urllib.request.Request(visitor.base + image)
    with visitor.opener.open(request, timeout=10) as response:
        assert response.status == 200 and response.headers["Content-Type"].startswith("image/")


def _current_plans(compose) -> tuple:
    """(quarter, {campaign_id: banner ids}) of the quarter being served now."""
    status, body = _visitor(compose).get("/campaigns/1")
    quarter = int(SLOT.search(body).group(2))
    plans = json.loads(compose.exec("web", "flask", "--app", "webapp", "plans", "--quarter", str(quarter), "--json"))
    return quarter, {p["campaign_id"]: p["banner_ids"] for p in plans}


def _upstreams_of(compose, agent) -> list:
    """The web replicas (container names) nginx sent `agent`'s requests to, in order, from nginx's access log."""
    ips = {compose.inspect(c, "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"): compose.inspect(c, "{{.Name}}")
           for c in compose.containers("web")}
    lines = [line for line in compose.logs("nginx").splitlines() if agent in line]
    return [ips.get(m.group(1), m.group(1)) for line in lines for m in [re.search(r"ua=([\d.]+):8000", line)] if m]


def check_rotation_across_replicas(compose):
    """Step 2: 20 views of one visitor spread over both replicas keep the rotation guarantees."""
    for _ in range(3):  # a quarter of the hour may turn during the views: then again
        quarter, plans = _current_plans(compose)
        campaign, banner_set = min(((c, ids) for c, ids in plans.items() if len(ids) >= 3), key=lambda p: len(p[1]))
        visitor = _visitor(compose)
        views = []
        for _ in range(20):
            status, body = visitor.get(f"/campaigns/{campaign}")
            assert status == 200, f"view of campaign {campaign}: {status}"
            match = SLOT.search(body)
            views.append((int(match.group(2)), int(match.group(3))))
        if {q for q, _ in views} == {quarter}:
            break
    else:
        pytest.fail("the quarter of the hour kept changing during the views")
    shown = [b for _, b in views]
    assert all(a != b for a, b in zip(shown, shown[1:])), f"a banner twice in a row: {shown}"
    n = len(banner_set)
    for start in range(0, len(shown) - n + 1, n):
        assert sorted(shown[start:start + n]) == sorted(banner_set), f"cycle at {start} is not a permutation: {shown}"
    assert set(shown[len(shown) // n * n:]) <= set(banner_set)
    served_by = _wait_for(lambda: (u := _upstreams_of(compose, visitor.agent)) and len(u) >= 20 and u,
                          "nginx's access log to show the 20 views", 15)
    assert len(set(served_by)) == 2, f"the views did not spread over both web replicas: {served_by}"


def check_admin_ingest(compose, username, password):
    """Step 3: an admin runs an ingest from the dashboard, the worker runs it, the history says it succeeded;
    the scheduler registered its schedules."""
    admin = _visitor(compose, "admin")
    admin.sign_in(username, password)
    status, body = admin.get("/admin/ingests", {"csrf_token": admin.csrf("/admin/ingests")})
    assert status == 200, f"Run ingest now: {status}"
    run_id = int(re.search(r"Ingest run #(\d+) is queued", body).group(1))

    def finished():
        _, rows = admin.get("/admin/ingests/rows")
        match = re.search(rf'id="run-{run_id}" data-status="([^"]+)"', rows)
        return match and match.group(1) not in ("queued", "running") and match.group(1)

    assert _wait_for(finished, f"ingest run #{run_id} to finish", 120) in SUCCEEDED
    assert f"run={run_id} end status=succeeded" in compose.logs("worker")
    scheduled = compose.exec("redis", "redis-cli", "ZRANGE", "rq:scheduler:scheduled_jobs", "0", "-1").split()
    assert {"bannerservice-scheduled-ingest", "bannerservice-scheduled-export"} <= set(scheduled), scheduled
    assert "Warning" not in compose.logs("scheduler"), compose.logs("scheduler")
    return run_id


def test_compose_stack_serves_ingests_and_rotates(stack, admin):
    check_served_and_ingested(stack)
    check_rotation_across_replicas(stack)
    check_admin_ingest(stack, *admin)


def _kill_like_a_crash(compose, pid):
    """SIGKILL to a container's main process from outside: what the engine sees when a process dies.
    (`docker kill` counts as a deliberate stop, which the restart policy respects: no restart.)"""
    try:
        os.kill(pid, signal.SIGKILL)
    except PermissionError:  # not root: a container in the host's process namespace sends it
        docker("run", "--rm", "--pid=host", "--user", "0", "--entrypoint", "sh", compose.values["APP_IMAGE"],
               "-c", f"kill -9 {pid}")


def test_compose_web_replica_crash_under_load(stack):
    """Step 4: one web replica dies under light load: nginx moves to the other, the restart policy brings it back."""
    wrk = shutil.which("wrk")
    if not wrk:
        pytest.fail("wrk is not installed (scripts/test.sh installs it: apt-get install wrk)")
    _, plans = _current_plans(stack)
    victim = stack.containers("web")[0]
    pid = int(stack.inspect(victim, "{{.State.Pid}}"))
    url = f"http://127.0.0.1:{stack.values['HTTP_PORT']}/campaigns/{min(plans)}"
    load = subprocess.Popen([wrk, "-t2", "-c4", "-d10s", "--timeout", "5s", url], stdout=subprocess.PIPE, text=True)
    time.sleep(3)
    _kill_like_a_crash(stack, pid)
    out, _ = load.communicate(timeout=60)
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    socket_errors = sum(map(int, re.findall(r"(?:connect|read|write|timeout) (\d+)", out)))
    non_2xx = int((re.search(r"Non-2xx or 3xx responses: (\d+)", out) or [0, 0])[1])
    assert requests > 200, out
    assert socket_errors + non_2xx <= 5, f"more than a handful of errors while a replica died:\n{out}"

    def back():
        return (int(stack.inspect(victim, "{{.RestartCount}}")) >= 1
                and stack.inspect(victim, "{{.State.Health.Status}}") == "healthy")

    _wait_for(back, f"the killed replica {victim[:12]} to be restarted and healthy", 90)
    # nginx reaches it again (a replica that came back at another address would be lost to nginx).
    visitor = _visitor(stack, "after-crash")
    for _ in range(20):
        assert visitor.get("/healthz")[0] == 200
    served_by = _wait_for(lambda: (u := _upstreams_of(stack, visitor.agent)) and len(u) >= 20 and u,
                          "nginx's access log to show the requests", 15)
    assert len(set(served_by)) == 2, f"nginx no longer uses the restarted replica: {served_by}"


def test_compose_redis_restart_and_down_up_keep_data(stack, admin):
    """Step 5: a Redis restart costs seconds; down and up again (volumes kept) keep data, users and history."""
    _, plans = _current_plans(stack)
    campaign = min(plans)
    visitor = _visitor(stack)
    assert visitor.get(f"/campaigns/{campaign}")[0] == 200
    stack.run("restart", "redis")
    started = time.monotonic()
    _wait_for(lambda: visitor.get(f"/campaigns/{campaign}")[0] == 200, "banner views after a Redis restart", 30, 0.2)
    assert time.monotonic() - started < 15, "banner views took more than 15 s to recover from a Redis restart"

    # The dashboard recovers within seconds too. Banner views do not prove that Redis answers again
    # (they are served without it); a sign-in does (its attempt is counted there), so it is what the test waits for.
    manager = _visitor(stack, "admin")
    _wait_for(lambda: manager.sign_in(*admin) or True, "a sign-in after a Redis restart", 30, 0.2)
    print(f"sign-in works again {time.monotonic() - started:.1f} s after the Redis restart")
    assert time.monotonic() - started < 15, "sign-in took more than 15 s to recover from a Redis restart"
    runs_before = _wait_for(lambda: _history_runs(manager), "the ingest history after a Redis restart", 15, 0.2)
    assert time.monotonic() - started < 20, "the ingest history took more than 20 s to recover from a Redis restart"
    version_before = json.loads(manager.get("/healthz")[1])["data_version"]["database"]

    stack.run("down", timeout=300)
    assert not stack.leftovers()["container"]
    stack.up()
    manager = _visitor(stack, "admin")
    manager.sign_in(*admin)  # the user is still there
    assert runs_before <= _history_runs(manager), "ingest history lost by down/up"
    health = json.loads(manager.get("/healthz")[1])
    assert health["data_version"]["database"] >= version_before
    assert visitor.get(f"/campaigns/{campaign}")[0] == 200


def _history_runs(manager) -> set:
    """The run ids on the ingest history page (each replica answers it: nginx takes turns)."""
    status, history = manager.get("/admin/ingests/rows")
    said = re.search(r'class="error-message">([^<]*)<', history)
    assert status == 200, f"/admin/ingests/rows: {status} {said.group(1) if said else history[:200]}"
    assert 'name="password"' not in history, "/admin/ingests/rows answered the sign-in page: the session was lost"
    return set(re.findall(r'id="run-(\d+)"', history))


def test_compose_app_runs_as_non_root_and_writes_only_data(stack):
    """Step 7: every app container runs as the image's user, its root is read-only, and /data holds its files."""
    checked = 0
    for service in APP_SERVICES:
        for container in stack.containers(service, all=True):
            name = stack.inspect(container, "{{.Name}}")
            assert stack.inspect(container, "{{.Config.User}}") == "app", name
            assert stack.inspect(container, "{{.HostConfig.ReadonlyRootfs}}") == "true", name
            assert docker("diff", container).strip() == "", f"{name} wrote outside /data and /tmp"
            checked += 1
    assert checked >= 5
    assert stack.exec("web", "id", "-u").strip() == "10001"
    not_ours = stack.exec("web", "find", "/data", "!", "-user", "app")
    assert not_ours.strip() == "", f"files in /data not owned by the app user: {not_ours}"
    assert "bannerservice.db" in stack.exec("web", "ls", "/data")


def test_compose_down_v_leaves_nothing(stack):
    """Step 8: `docker compose down -v` removes every container, volume and network of the project."""
    stack.run("down", "-v", "--remove-orphans", timeout=300)
    assert stack.leftovers() == {"container": [], "volume": [], "network": []}


def test_compose_first_start_with_a_new_shared_volume_succeeds_three_times_in_a_row(stack):
    """Issue 19 case 10: the app's services that mount the new `appdata` volume start at once, from a fresh volume,
    three times: the image leaves /data empty, so the engine has nothing to copy into it from several containers."""
    sharing = ["web", "worker", "scheduler"]  # nginx too mounts it, but waits for a healthy web, which needs Redis
    for attempt in range(3):
        stack.run("down", "-v", "--remove-orphans", timeout=300)
        assert stack.leftovers()["volume"] == [], attempt
        # --no-deps: only the services sharing the volume, all created and started together (the race was there).
        stack.run("up", "-d", "--no-build", "--no-deps", *sharing, timeout=300)
        started = {service: stack.containers(service, all=True) for service in sharing}
        assert len(started["web"]) == 2 and all(started.values()), (attempt, started)
    stack.run("down", "-v", "--remove-orphans", timeout=300)
    assert stack.leftovers() == {"container": [], "volume": [], "network": []}


@pytest.fixture(scope="module")
def postgres_stack(tmp_path_factory, images_env):
    yield from _stack(tmp_path_factory, images_env, "postgres", postgres=True)


def test_compose_postgres_profile_smoke(postgres_stack):
    """Step 6: steps 1-3 with the PostgreSQL profile, and the data really is in PostgreSQL."""
    password = uuid.uuid4().hex
    postgres_stack.exec("web", "flask", "--app", "webapp", "users", "create", "e2e-admin", "--role", "admin",
                        env={"BANNERSERVICE_PASSWORD": password})
    check_served_and_ingested(postgres_stack)
    check_rotation_across_replicas(postgres_stack)
    run_id = check_admin_ingest(postgres_stack, "e2e-admin", password)
    runs = postgres_stack.exec("postgres", "psql", "-U", "bannerservice", "-d", "bannerservice", "-tAc",
                               "SELECT max(id) FROM ingestrun")
    assert int(runs.strip()) >= run_id
    postgres_stack.run("down", "-v", "--remove-orphans", timeout=300)
    assert postgres_stack.leftovers() == {"container": [], "volume": [], "network": []}
