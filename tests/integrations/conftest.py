"""Fixtures for the integration tests: a throwaway PostgreSQL server on loopback.

``postgres_url`` finds ``initdb`` and ``pg_ctl`` (under ``/usr/lib/postgresql/*/bin``, else on ``PATH``),
creates a temporary cluster, starts it on a free loopback port, creates a database and yields its
SQLAlchemy URL. Running as root, the cluster belongs to the ``postgres`` system user (PostgreSQL refuses
to run as root). Without PostgreSQL the tests that need it are skipped with the reason; ``.ci/run``
installs the Debian ``postgresql`` package.
"""

from __future__ import annotations

import glob
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


def _find_pg_bin() -> Path | None:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: [int(x) for x in Path(p).parent.name.split(".") if x.isdigit()])
    for d in reversed(candidates):
        if (Path(d) / "initdb").exists() and (Path(d) / "pg_ctl").exists():
            return Path(d)
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl and Path(initdb).parent == Path(pg_ctl).parent:
        return Path(initdb).parent
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    bindir = _find_pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (no initdb/pg_ctl under /usr/lib/postgresql/*/bin or on PATH); "
                    "install the Debian package 'postgresql' (.ci/run does)")
    prefix: list[str] = []
    base = Path(tempfile.mkdtemp(prefix="autollm-pg-"))
    if os.geteuid() == 0:
        try:
            pg_user = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(base, ignore_errors=True)
            pytest.skip("running as root and there is no 'postgres' system user to own the test cluster")
        runuser = shutil.which("runuser")
        prefix = [runuser, "-u", "postgres", "--"] if runuser else ["su", "postgres", "-s", "/bin/sh", "-c"]
        os.chown(base, pg_user.pw_uid, pg_user.pw_gid)
    data, sock, log = base / "data", base / "sock", base / "server.log"

    def run(*cmd: str) -> subprocess.CompletedProcess[str]:
        full = [*prefix, shlex.join(cmd)] if prefix[:1] == ["su"] else [*prefix, *cmd]
        return subprocess.run(full, capture_output=True, text=True, timeout=120)

    run("mkdir", "-p", str(sock))
    res = run(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")
    if res.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        pytest.skip(f"initdb failed: {res.stderr.strip()[-500:]}")
    port = _free_port()
    opts = f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50"
    res = run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", opts, "-w", "-t", "60", "start")
    if res.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        pytest.skip(f"pg_ctl start failed: {res.stderr.strip()[-500:]}")
    try:
        import psycopg2

        deadline = time.time() + 30
        while True:
            try:
                conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
                break
            except psycopg2.OperationalError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE autollm_test")
        conn.close()
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/autollm_test"
    finally:
        run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)
