"""docker-compose.yml and Dockerfile: valid, complete, and running only commands that exist outside Docker too."""

import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
from render_nginx import PLACEHOLDER, default_values  # noqa: E402

COMPOSE = ROOT / "docker-compose.yml"
LONG_RUNNING = {"nginx", "web", "worker", "scheduler", "redis", "redis-sessions", "minio", "postgres"}
# The secrets compose refuses to start without (scripts/docker-env.sh writes them into .env).
SECRETS = {"SECRET_KEY": "k", "MINIO_ROOT_USER": "u", "MINIO_ROOT_PASSWORD": "p"}


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load(COMPOSE.read_text())


def _has_compose_plugin() -> bool:
    if not shutil.which("docker"):
        return False
    result = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
    return result.returncode == 0


def _compose_config(args, env):
    # Only these variables: the developer's environment or .env must not decide the outcome.
    return subprocess.run(["docker", "compose", "--env-file", "/dev/null", *args, "-f", str(COMPOSE), "config", "-q"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), **env})


@pytest.mark.skipif(not _has_compose_plugin(), reason="the docker client has no compose plugin here")
@pytest.mark.parametrize("profile", [[], ["--profile", "postgres"]])
def test_compose_config_is_valid(profile):
    result = _compose_config(profile, SECRETS)
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(not _has_compose_plugin(), reason="the docker client has no compose plugin here")
@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_compose_config_refuses_to_start_without_secrets(missing):
    result = _compose_config([], {k: v for k, v in SECRETS.items() if k != missing})
    assert result.returncode != 0 and missing in result.stderr and "scripts/docker-env.sh" in result.stderr


_VARIABLE = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<default>[^}]*))?\}|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
)


def interpolate(text, env):
    """Compose's variable substitution (${NAME}, ${NAME:-default}, ${NAME-default}, $$), as `docker compose` does first."""
    def value(match):
        if match.group(0) == "$$":
            return "$$"
        name, op, default = match.group("name") or match.group("bare"), match.group("op"), match.group("default")
        current = env.get(name)
        if op == ":-" and not current or op == "-" and current is None:
            return default or ""
        if op in (":?", "?") and not current:
            raise ValueError(f"{name} must be set: {default}")
        return current or ""

    return _VARIABLE.sub(value, text)


def parse_compose_spec(text, env):
    """The file through the compose_spec parser (a Rust implementation of the Compose specification)."""
    from compose_spec import PyCompose
    import json

    return PyCompose.from_json(json.dumps(yaml.safe_load(interpolate(text, env))))


@pytest.mark.parametrize("env", [SECRETS, {**SECRETS, "WEB_REPLICAS": "4",
                                             "DATABASE_URL": "postgresql://bannerservice:pw@postgres:5432/bannerservice"}])
def test_compose_file_follows_the_compose_specification(env):
    parsed = parse_compose_spec(COMPOSE.read_text(), env)
    assert set(parsed.service_names()) >= LONG_RUNNING | {"minio-init"}


@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_compose_file_has_no_default_secrets(missing):
    with pytest.raises(ValueError, match=missing):
        interpolate(COMPOSE.read_text(), {k: v for k, v in SECRETS.items() if k != missing})


def test_compose_file_takes_every_image_through_a_variable(compose):
    images = {name: service.get("image") for name, service in compose["services"].items() if "build" not in service}
    assert all(re.fullmatch(r"\$\{[A-Z0-9_]+_IMAGE:-[^}]+\}", image) for image in images.values()), images
    assert compose["x-app"]["build"]["args"]["PYTHON_IMAGE"] == "${PYTHON_IMAGE:-python:3.11-slim}"
    assert re.search(r"^ARG PYTHON_IMAGE=python:3.11-slim\nFROM \$\{PYTHON_IMAGE\}$", (ROOT / "Dockerfile").read_text(), re.M)


@pytest.mark.parametrize("mistake", [
    ("restart: unless-stopped", "restart: sometimes"),
    ("healthcheck:", "healthchek:"),
    ("condition: service_healthy", "condition: service_happy"),
])
def test_compose_specification_check_catches_mistakes(mistake):
    with pytest.raises(ValueError):
        parse_compose_spec(COMPOSE.read_text().replace(*mistake, 1), SECRETS)


def test_compose_has_every_part_with_restart_and_health_checks(compose):
    services = compose["services"]
    assert LONG_RUNNING | {"minio-init"} <= set(services)
    for name in LONG_RUNNING:
        service = {**compose.get("x-app", {}), **services[name]}
        assert service.get("restart") in ("unless-stopped", "always"), name
        assert service["healthcheck"]["test"], name
    assert services["minio-init"]["restart"] == "no"
    assert services["postgres"]["profiles"] == ["postgres"]
    assert "replicas" in services["web"]["deploy"]


def _option(command, name):
    return command[command.index(name) + 1]


def test_compose_redis_persists_to_a_volume(compose):
    redis = compose["services"]["redis"]
    assert _option(redis["command"], "--appendonly") == "yes"
    assert _option(redis["command"], "--maxmemory-policy") == "noeviction"
    assert _option(redis["command"], "--dir") == "/data"
    assert any(volume.endswith(":/data") for volume in redis["volumes"])


def test_compose_sessions_redis_is_bounded_and_not_persisted(compose):
    services = compose["services"]
    sessions = services["redis-sessions"]
    assert _option(sessions["command"], "--maxmemory-policy") == "allkeys-lru"
    assert _option(sessions["command"], "--maxmemory")
    assert _option(sessions["command"], "--appendonly") == "no" and _option(sessions["command"], "--save") == ""
    assert "volumes" not in sessions
    web = services["web"]["environment"]
    assert web["SESSION_REDIS_URL"] == "redis://redis-sessions:6379/0" and web["TRUSTED_PROXY_COUNT"]
    assert services["web"]["depends_on"]["redis-sessions"]["condition"] == "service_healthy"


def test_compose_nginx_sets_every_placeholder_of_the_template(compose):
    nginx = compose["services"]["nginx"]
    template_names = set(PLACEHOLDER.findall((ROOT / "nginx.conf").read_text()))
    assert template_names == set(default_values({})), "render_nginx.py's defaults and nginx.conf disagree"
    assert template_names <= set(nginx["environment"])
    # envsubst renders exactly our placeholders: nginx's own $variables ($host, $remote_addr) stay.
    script = nginx["command"][-1]
    listed = re.search(r"envsubst '([^']*)'", script).group(1)
    assert set(re.findall(r"\$\$\{(\w+)\}", listed)) == template_names
    assert "/etc/nginx/templates/nginx.conf.template > /etc/nginx/nginx.conf" in script
    assert "exec nginx -g 'daemon off;'" in script
    assert "./nginx.conf:/etc/nginx/templates/nginx.conf.template:ro" in nginx["volumes"]


def _flask_commands(compose) -> set:
    commands = [
        " ".join(command) if isinstance(command, list) else str(command)
        for service in compose["services"].values()
        for command in (service.get("command"), service.get("entrypoint"))
        if command
    ]
    return set(re.findall(r"flask --app webapp ([a-z-]+)", "\n".join(commands)))


def test_compose_runs_only_commands_the_app_has(compose, app):
    names = _flask_commands(compose)
    assert {"demo-data", "scheduler", "ingest"} <= names
    assert names <= set(app.cli.list_commands(None))
    assert (ROOT / "scripts" / "s3_upload.py").exists()
    for script in re.findall(r"python (scripts/[\w.]+)", yaml.safe_dump(compose)):
        assert (ROOT / script).exists(), script


def test_dockerfile_copies_what_the_processes_import():
    dockerfile = (ROOT / "Dockerfile").read_text()
    for module in ("config.py", "models.py", "selection.py", "rotation.py"):
        assert module in dockerfile
    for package in ("jobs", "webapp", "live"):
        assert f"COPY {package} ./{package}" in dockerfile
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored and "instance" in ignored
    top_level = {p.stem for p in ROOT.glob("*.py")}
    copied = set(re.findall(r"(\w+)\.py", dockerfile))
    assert top_level <= copied, f"modules the image lacks: {top_level - copied}"


def test_s3_upload_creates_the_bucket_and_keeps_paths(tmp_path):
    moto = pytest.importorskip("moto")
    from s3_upload import upload_tree

    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "clicks.csv").write_text("click_id,banner_id,campaign_id\n")
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "image_1.png").write_bytes(b"\x89PNG")
    with moto.mock_aws():
        import boto3

        client = boto3.client("s3", region_name="us-east-1")
        assert upload_tree(tmp_path, "s3://banners/demo", client) == 2
        assert upload_tree(tmp_path, "s3://banners/demo", client) == 2  # the bucket exists now: no error
        keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket="banners")["Contents"])
    assert keys == ["demo/1/clicks.csv", "demo/images/image_1.png"]


def _project_copy(tmp_path):
    """The checkout's tracked files (what the image build gets), built once already: a second build is
    where setuptools sees the first one's egg-info and warns about undeclared data folders."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    copy = tmp_path / "project"
    for name in filter(None, files):
        source = ROOT / name.decode()
        if source.is_file():
            (copy / name.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name.decode())
    shutil.copy2(ROOT / "pyproject.toml", copy / "pyproject.toml")
    return copy


def _build_output(args, cwd):
    result = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, timeout=300, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


def test_package_build_prints_no_setuptools_warnings(tmp_path):
    copy = _project_copy(tmp_path)
    for attempt in range(2):
        output = _build_output(["wheel", "--no-deps", "-v", "-w", str(tmp_path / f"dist{attempt}"), "."], copy)
        assert not re.findall(r"\w*Warning\b.*", output), re.findall(r"\w*Warning\b.*", output)
    import zipfile

    names = zipfile.ZipFile(next((tmp_path / "dist1").glob("*.whl"))).namelist()
    assert "webapp/templates/admin/_ingest_rows.html" in names and "webapp/static/htmx.min.js" in names
    assert not [n for n in names if "__pycache__" in n]


def test_package_editable_install_prints_no_setuptools_warnings(tmp_path):
    copy = _project_copy(tmp_path)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "venv")], check=True)
    python = str(tmp_path / "venv" / "bin" / "python")
    for _ in range(2):
        output = _build_output(["--python", python, "install", "--no-deps", "-e", "."], copy)
        assert "Warning" not in output, output
    check = subprocess.run([python, "-c", "import importlib.util, rotation; print(importlib.util.find_spec('webapp').origin)"], capture_output=True,
                           text=True, cwd=tmp_path)
    assert check.stdout.strip() == str(copy / "webapp" / "__init__.py"), check.stderr


def test_dockerfile_leaves_the_shared_volume_empty_in_the_image():
    # Several services mount the new named volume at once and the engine copies the image's /data into it
    # from each: a folder there made the first `docker compose up` fail now and then ("file exists").
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "VOLUME /data" in dockerfile
    made = re.findall(r"mkdir -p ([^&\n\\]+)", dockerfile)
    assert made and all(path.split() == ["/data"] for path in made), made
    assert not re.search(r"COPY [^\n]* /data", dockerfile)
