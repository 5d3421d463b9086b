"""scripts/docker-standins.sh's engine step: whatever it starts in the background must not keep its lock.

The daemon here is a stand-in script (the real one runs already on machines that have one, so the
start-up path is never taken twice there); the lock, the script and bash are the real ones.
"""

import os
import subprocess
import textwrap

import pytest

from conftest import ROOT


@pytest.fixture
def fake_engine(tmp_path):
    """A PATH where `dockerd` starts a long-lived process and `docker info` answers once it has started."""
    if os.geteuid() != 0:
        pytest.skip("the script starts an engine only as root")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    started, pidfile = tmp_path / "started", tmp_path / "dockerd.pid"
    (bin_dir / "dockerd").write_text(textwrap.dedent(f"""\
        #!/bin/sh
        echo $$ > {pidfile}
        touch {started}
        exec sleep 120
    """))
    (bin_dir / "docker").write_text(textwrap.dedent(f"""\
        #!/bin/sh
        case "$1" in
            info) [ -e {started} ] ;;
            compose) exit 0 ;;
            *) exit 1 ;;
        esac
    """))
    for name in ("dockerd", "docker"):
        (bin_dir / name).chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", STANDINS_CACHE=str(tmp_path / "cache"),
               DOCKERD_LOG=str(tmp_path / "dockerd.log"))
    yield env
    if pidfile.exists():
        subprocess.run(["kill", pidfile.read_text().strip()], check=False)


def test_engine_started_by_the_script_does_not_hold_its_lock(fake_engine):
    script = ["bash", str(ROOT / "scripts" / "docker-standins.sh"), "--engine"]
    first = subprocess.run(script, env=fake_engine, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0 and "starting dockerd" in first.stderr + first.stdout, first.stderr
    # The daemon is still running: a second run must get the lock at once, not wait for the daemon to end.
    second = subprocess.run(script, env=fake_engine, cwd=ROOT, capture_output=True, text=True, timeout=20)
    assert second.returncode == 0, second.stderr
