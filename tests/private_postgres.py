"""A PostgreSQL cluster of a test's own (initdb in a temp folder, run as the postgres user on a free port)
that the test may freeze (SIGSTOP of the postmaster and all its processes) and thaw: never the shared server."""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

def _pg_bin() -> Path:
    """The newest installed PostgreSQL's server programs (Debian keeps them out of PATH)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    return found[-1].parent if found else Path("/usr/lib/postgresql/15/bin")


PG_BIN = Path(os.environ["PG_BIN"]) if os.environ.get("PG_BIN") else _pg_bin()
PG_USER = "postgres"


class PostgresCluster:
    """initdb + postgres under a temp folder owned by PG_USER, listening on 127.0.0.1 only."""

    def __init__(self):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        # Not pytest's tmp_path: its folders are private to root, and the server runs as PG_USER.
        self.work = Path(tempfile.mkdtemp(prefix="bs-pg-"))
        shutil.chown(self.work, PG_USER)
        self.data = self.work / "data"
        self.url = f"postgresql://{PG_USER}@127.0.0.1:{self.port}/postgres"
        self.process = None

    def _as_user(self, *command, **kwargs):
        return subprocess.run(["runuser", "-u", PG_USER, "--", *map(str, command)], check=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kwargs)

    def start(self):
        if not self.data.exists():
            self._as_user(PG_BIN / "initdb", "-D", self.data, "-U", PG_USER, "-A", "trust", "--no-sync")
        self.process = subprocess.Popen(
            ["runuser", "-u", PG_USER, "--", str(PG_BIN / "postgres"), "-D", str(self.data), "-p", str(self.port),
             "-k", str(self.work), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=200"],
            stdout=subprocess.DEVNULL, stderr=open(self.work / "server.log", "wb"),
        )
        deadline = time.monotonic() + 30
        while not self._answers():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"the private PostgreSQL did not start: {(self.work / 'server.log').read_text()}")
            time.sleep(0.1)
        return self

    def _answers(self) -> bool:
        return subprocess.run([PG_BIN / "pg_isready", "-h", "127.0.0.1", "-p", str(self.port), "-t", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0

    def postmaster_pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def processes(self) -> list[int]:
        """The postmaster and every process it started (checkpointer, walwriter, backends...)."""
        postmaster = self.postmaster_pid()
        children = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == postmaster:
                    children.append(int(entry.name))
        return [postmaster, *children]

    def freeze(self):
        """Stop every process of the cluster: it accepts TCP connections (the kernel does) but answers nothing."""
        os.kill(self.postmaster_pid(), signal.SIGSTOP)  # first: frozen, it starts no new child meanwhile
        for pid in self.processes()[1:]:
            os.kill(pid, signal.SIGSTOP)

    def thaw(self):
        # runuser stops itself when its child stops (as su does for job control): wake it too.
        for pid in [self.process.pid, *self.processes()]:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass

    def stop(self):
        if self.process is not None:
            self.thaw()
            try:
                os.kill(self.postmaster_pid(), signal.SIGINT)  # fast shutdown
            except (OSError, ValueError):
                pass
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
            self.process = None
        shutil.rmtree(self.work, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres_cluster():
    """A private PostgreSQL for this test module (skipped where PostgreSQL 15 or the postgres user is missing)."""
    if not (PG_BIN / "initdb").exists() or shutil.which("runuser") is None:
        message = f"needs PostgreSQL's server programs in {PG_BIN} and runuser (scripts/test.sh installs postgresql)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    try:
        import pwd

        pwd.getpwnam(PG_USER)
    except KeyError:
        pytest.skip(f"needs a {PG_USER} user to run the private PostgreSQL as")
    cluster = PostgresCluster()
    try:
        yield cluster.start()
    finally:
        cluster.stop()
