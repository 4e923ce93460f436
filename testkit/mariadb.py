"""A throwaway MariaDB server on 127.0.0.1, as RAGFlow's database for the tests."""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
import time
from pathlib import Path

import pymysql

from .ragflow.ragflow_schema import RAGFLOW_TABLES
from .support import free_port

MARIADB_PROGRAMS = ("mariadb-install-db", "mariadbd")
DB_USER = "ragflow_admin"
DB_PASSWORD = "db-secret"


def find_programs() -> dict[str, str]:
    """Where MARIADB_PROGRAMS are; RuntimeError naming the missing ones and how to install them."""
    # mariadbd lives in /usr/sbin, which a non-root user's PATH often lacks.
    search_path = os.environ["PATH"] + os.pathsep + "/usr/sbin"
    programs = {program: shutil.which(program, path=search_path) for program in MARIADB_PROGRAMS}
    missing = [program for program, path in programs.items() if path is None]
    if missing:
        raise RuntimeError(
            "%s not found: install MariaDB with `apt-get install -y mariadb-server`" % ", ".join(missing)
        )
    return programs


class MariaDB:
    """A throwaway mariadbd on 127.0.0.1 with its datadir and socket in `workdir`."""

    def __init__(self, workdir: Path, programs: dict[str, str]):
        self.workdir = workdir
        self.datadir = workdir / "data"
        self.socket = str(workdir / "mysqld.sock")
        self.port = free_port()
        user = getpass.getuser()
        install = subprocess.run(
            [
                programs["mariadb-install-db"],
                "--no-defaults",
                "--datadir=%s" % self.datadir,
                "--user=%s" % user,
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if install.returncode != 0:
            raise RuntimeError("mariadb-install-db failed: %s" % (install.stdout + install.stderr)[-2000:])
        self.log = workdir / "mariadbd.log"
        self.process = subprocess.Popen(
            [
                programs["mariadbd"],
                "--no-defaults",
                "--datadir=%s" % self.datadir,
                "--socket=%s" % self.socket,
                "--pid-file=%s" % (workdir / "mariadbd.pid"),
                "--log-error=%s" % self.log,
                "--bind-address=127.0.0.1",
                "--port=%d" % self.port,
                "--user=%s" % user,
                "--skip-log-bin",
                "--innodb-buffer-pool-size=16M",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.wait_until_up()
        with self.root() as connection, connection.cursor() as cursor:
            cursor.execute("CREATE USER %s@'127.0.0.1' IDENTIFIED BY %s", (DB_USER, DB_PASSWORD))
            cursor.execute("GRANT ALL ON *.* TO %s@'127.0.0.1'", (DB_USER,))

    def root(self, database: str | None = None):
        return pymysql.connect(unix_socket=self.socket, user="root", database=database, autocommit=True)

    def wait_until_up(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("mariadbd exited: %s" % self.log.read_text()[-2000:])
            try:
                self.root().close()
                return
            except pymysql.err.OperationalError:
                time.sleep(0.2)
        raise RuntimeError("mariadbd did not answer within %d s: %s" % (timeout, self.log.read_text()[-2000:]))

    def create_database(self, name: str, tables=RAGFLOW_TABLES) -> None:
        with self.root() as connection, connection.cursor() as cursor:
            cursor.execute("DROP DATABASE IF EXISTS `%s`" % name)
            cursor.execute("CREATE DATABASE `%s` CHARACTER SET utf8mb4" % name)
            cursor.execute("USE `%s`" % name)
            for statement in tables:
                cursor.execute(statement)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
