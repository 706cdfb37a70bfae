"""A real PostgreSQL server on loopback for the tests: its own data directory and free port, stopped by the test.

Binaries: PG_BIN (a directory), else the system's (PATH, /usr/lib/postgresql/*/bin), else those of the `pgserver`
package (.ci/run installs it where the system has none). PostgreSQL refuses to run as root: as root the server
runs as an unprivileged user (nobody), which owns its data directory. With no binaries the caller skips, unless
SIMMIM_REQUIRE_POSTGRES=1 (CI), where a skip would hide that the tests did not run.
"""
from __future__ import annotations

import glob
import importlib.util
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass

from simmim_ray.train.ray_init import free_port

PASSWORD = "pw:Σ/secret"  # ':' and '/' percent-encoded in the URL; never in a message (db_url)


def bin_dir() -> str | None:
    candidates = [os.environ.get("PG_BIN", "")]
    on_path = shutil.which("initdb")
    candidates.append(os.path.dirname(on_path) if on_path else "")
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    spec = importlib.util.find_spec("pgserver")  # located, not imported: its import starts nothing, but is slow
    if spec and spec.submodule_search_locations:
        candidates += [os.path.join(p, "pginstall", "bin") for p in spec.submodule_search_locations]
    for d in candidates:
        if d and all(os.access(os.path.join(d, b), os.X_OK) for b in ("initdb", "pg_ctl", "postgres")):
            return d
    return None


def skip_reason() -> str | None:
    if bin_dir() is None:
        why = ("no PostgreSQL binaries (initdb, pg_ctl, postgres) on PATH, in /usr/lib/postgresql/*/bin or from "
               "the pgserver package; install postgresql or `pip install pgserver`")
        if os.environ.get("SIMMIM_REQUIRE_POSTGRES") == "1":
            raise RuntimeError(why + " (SIMMIM_REQUIRE_POSTGRES=1: CI must test PostgreSQL)")
        return why
    return None


def _as_server_user() -> list[str]:
    """The command prefix that runs the server as a user PostgreSQL accepts: none unless we are root."""
    if os.geteuid() != 0:
        return []
    import pwd

    nobody = pwd.getpwnam("nobody")
    if shutil.which("setpriv"):
        return ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups"]
    return ["runuser", "-u", "nobody", "--"]


@dataclass
class Server:
    bindir: str
    root: str
    port: int
    user: str = "simmim"

    def url(self, database: str = "postgres", password: str | None = PASSWORD, port: int | None = None) -> str:
        from urllib.parse import quote

        auth = f"{self.user}:{quote(password, safe='')}" if password is not None else self.user
        return f"postgresql://{auth}@127.0.0.1:{port or self.port}/{database}"

    def run(self, *args: str) -> None:
        subprocess.run([*_as_server_user(), *args], check=True, capture_output=True, timeout=120)

    def createdb(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')

    def stop(self) -> None:
        subprocess.run([*_as_server_user(), os.path.join(self.bindir, "pg_ctl"), "-D", self.data, "-m", "immediate",
                        "-w", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)

    @property
    def data(self) -> str:
        return os.path.join(self.root, "data")


def start() -> Server:
    """initdb (password authentication: scram-sha-256) and start on 127.0.0.1, a free port; the caller stops it."""
    bindir = bin_dir()
    root = tempfile.mkdtemp(prefix="simmim_pg_")
    os.chmod(root, 0o755)  # mkdtemp's 0700 would keep the server user out
    server = Server(bindir, root, free_port())
    pwfile = os.path.join(root, "pw")
    with open(pwfile, "w") as f:
        f.write(PASSWORD + "\n")
    if os.geteuid() == 0:
        import pwd

        nobody = pwd.getpwnam("nobody")
        for p in (root, pwfile):
            os.chown(p, nobody.pw_uid, nobody.pw_gid)
    try:
        server.run(os.path.join(bindir, "initdb"), "-D", server.data, "-U", server.user, "--auth=scram-sha-256",
                   f"--pwfile={pwfile}", "--no-sync", "-E", "UTF8", "--locale=C")
        # loopback TCP only; its socket in its own directory (the system's /var/run/postgresql may not exist)
        server.run(os.path.join(bindir, "pg_ctl"), "-D", server.data, "-l", os.path.join(root, "log"), "-w", "-t",
                   "60", "-o", f"-h 127.0.0.1 -p {server.port} -k {root} -c fsync=off", "start")
    except subprocess.CalledProcessError as e:
        log = os.path.join(root, "log")
        tail = open(log).read()[-2000:] if os.path.exists(log) else ""
        server.stop()
        raise RuntimeError(f"PostgreSQL did not start: {e.stderr.decode()[-2000:]}\n{tail}") from None
    return server
