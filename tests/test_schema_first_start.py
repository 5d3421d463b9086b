"""The schema on a new PostgreSQL database when every process of a first start creates it at once (compose's
web replicas, worker, scheduler and init job): each one starts, none fails on another's CREATE TABLE."""

import subprocess
import sys
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

import pytest

from conftest import ROOT, TEST_DATABASE_URL

pytestmark = pytest.mark.skipif(not TEST_DATABASE_URL, reason="PostgreSQL's race: needs TEST_DATABASE_URL")

STARTERS = 6
START = """
import sys, time
from models import init_db
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))  # every process at the same moment
init_db(sys.argv[1])
"""


@pytest.fixture
def new_database():
    """A database of its own, empty, dropped afterwards."""
    import psycopg2

    admin = psycopg2.connect(TEST_DATABASE_URL)
    admin.autocommit = True
    names = []

    def make():
        name = f"bannerservice_first_{uuid.uuid4().hex[:10]}"
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        names.append(name)
        return urlunsplit(urlsplit(TEST_DATABASE_URL)._replace(path=f"/{name}"))

    yield make
    with admin.cursor() as cursor:
        for name in names:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


def test_schema_first_start_of_many_processes_at_once_creates_it_without_an_error(new_database):
    from models import ALL_MODELS

    for attempt in range(3):
        url = new_database()
        at = time.time() + 3  # after every interpreter has imported models
        starters = [subprocess.Popen([sys.executable, "-c", START, url, str(at)], cwd=ROOT,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(STARTERS)]
        outputs = [(p.wait(timeout=60), p.stdout.read()) for p in starters]
        failed = [out[-1500:] for code, out in outputs if code != 0]
        assert not failed, f"attempt {attempt}: {len(failed)} of {STARTERS} starts failed:\n" + "\n".join(failed)
    import psycopg2

    with psycopg2.connect(url) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        assert {row[0] for row in cursor.fetchall()} >= {m._meta.table_name for m in ALL_MODELS}
