"""docker-compose.yml and Dockerfile: valid, complete, and running only commands that exist outside Docker too."""

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
LONG_RUNNING = {"nginx", "web", "worker", "scheduler", "redis", "minio", "postgres"}


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load(COMPOSE.read_text())


def _has_compose_plugin() -> bool:
    if not shutil.which("docker"):
        return False
    result = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
    return result.returncode == 0


@pytest.mark.skipif(not _has_compose_plugin(), reason="the docker client has no compose plugin here")
@pytest.mark.parametrize("profile", [[], ["--profile", "postgres"]])
def test_compose_config_is_valid(profile):
    result = subprocess.run(["docker", "compose", *profile, "-f", str(COMPOSE), "config", "-q"],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr


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


@pytest.mark.parametrize("env", [{}, {"DATABASE_URL": "postgresql://bannerservice:bannerservice@postgres:5432/bannerservice",
                                      "WEB_REPLICAS": "4", "SECRET_KEY": "s"}])
def test_compose_file_follows_the_compose_specification(env):
    parsed = parse_compose_spec(COMPOSE.read_text(), env)
    assert set(parsed.service_names()) >= LONG_RUNNING | {"minio-init"}


@pytest.mark.parametrize("mistake", [
    ("restart: unless-stopped", "restart: sometimes"),
    ("healthcheck:", "healthchek:"),
    ("condition: service_healthy", "condition: service_happy"),
])
def test_compose_specification_check_catches_mistakes(mistake):
    with pytest.raises(ValueError):
        parse_compose_spec(COMPOSE.read_text().replace(*mistake, 1), {})


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


def test_compose_redis_persists_to_a_volume(compose):
    redis = compose["services"]["redis"]
    assert "--appendonly" in redis["command"] and redis["command"][redis["command"].index("--appendonly") + 1] == "yes"
    assert any(volume.endswith(":/data") for volume in redis["volumes"])


def test_compose_nginx_sets_every_placeholder_of_the_template(compose):
    nginx = compose["services"]["nginx"]
    template_names = set(PLACEHOLDER.findall((ROOT / "nginx.conf").read_text()))
    assert template_names == set(default_values({})), "render_nginx.py's defaults and nginx.conf disagree"
    env = nginx["environment"]
    assert template_names <= set(env)
    allowed = re.compile(env["NGINX_ENVSUBST_FILTER"].replace("$$", "$"))
    assert all(allowed.search(name) for name in template_names)
    assert not allowed.search("NGINX_VERSION") and not allowed.search("HOSTNAME")
    assert "./nginx.conf:/etc/nginx/templates/nginx.conf.template:ro" in nginx["volumes"]


def _flask_commands(compose) -> set:
    text = yaml.safe_dump(compose)
    return set(re.findall(r"flask --app webapp ([a-z-]+)", text))


def test_compose_runs_only_commands_the_app_has(compose, app):
    names = _flask_commands(compose)
    assert {"demo-data", "schedule", "ingest"} <= names
    assert names <= set(app.cli.list_commands(None))
    assert (ROOT / "scripts" / "s3_upload.py").exists()
    for script in re.findall(r"python (scripts/[\w.]+)", yaml.safe_dump(compose)):
        assert (ROOT / script).exists(), script


def test_dockerfile_copies_what_the_processes_import():
    dockerfile = (ROOT / "Dockerfile").read_text()
    for module in ("config.py", "models.py", "selection.py", "rotation.py", "gunicorn.conf.py"):
        assert module in dockerfile
    for package in ("jobs", "webapp"):
        assert f"COPY {package} ./{package}" in dockerfile
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored and "instance" in ignored
    top_level = {p.stem for p in ROOT.glob("*.py") if p.name != "gunicorn.conf.py"}
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
