"""A throwaway PostgreSQL cluster for the production-profile tests: Debian's server binaries,
``initdb`` into a temporary folder, ``pg_ctl`` on 127.0.0.1 with a free port, password
authentication, and everything removed afterwards."""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg2

from finmath_assets_tests.conftest import free_port


def server_bin_dir() -> Path:
    """Debian keeps initdb/pg_ctl under /usr/lib/postgresql/<major>/bin, off the PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    assert found, (
        "no /usr/lib/postgresql/*/bin/initdb: run `make system-deps` (Debian's postgresql)"
    )
    return Path(found[-1]).parent


@dataclass(frozen=True)
class Postgres:
    host: str
    port: int
    user: str
    password: str

    def url(self, database: str, scheme: str = "postgresql+psycopg2") -> str:
        return f"{scheme}://{self.user}:{self.password}@{self.host}:{self.port}/{database}"

    def connect(self, database: str = "postgres"):
        return psycopg2.connect(
            host=self.host, port=self.port, user=self.user, password=self.password, dbname=database
        )

    def create_database(self, name: str) -> None:
        connection = self.connect()
        connection.autocommit = True  # CREATE DATABASE cannot run in a transaction
        try:
            with connection.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{name}"')
        finally:
            connection.close()


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[Postgres]:
    bindir = server_bin_dir()
    # not under pytest's tmp_path: its parents are private to root, and the server runs as
    # the postgres user when the tests run as root (initdb refuses root)
    root = Path(tempfile.mkdtemp(prefix="finmath-pg-"))
    password = secrets.token_hex(12)
    (root / "pwfile").write_text(password)
    as_server_user: list[str] = []
    if os.geteuid() == 0:
        for path in (root, root / "pwfile"):
            shutil.chown(path, "postgres", "postgres")
        as_server_user = ["runuser", "-u", "postgres", "--"]
    data = root / "data"
    subprocess.run(
        [
            *as_server_user,
            str(bindir / "initdb"),
            f"--pgdata={data}",
            "--username=finmath",
            f"--pwfile={root / 'pwfile'}",
            "--auth=scram-sha-256",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
    )
    port = free_port()
    pg_ctl = [*as_server_user, str(bindir / "pg_ctl"), f"--pgdata={data}"]
    subprocess.run(
        [
            *pg_ctl,
            f"--log={root / 'server.log'}",
            "--wait",
            "-o",
            f"-h 127.0.0.1 -p {port} -k {root}",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield Postgres(host="127.0.0.1", port=port, user="finmath", password=password)
    finally:
        subprocess.run([*pg_ctl, "--mode=immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
