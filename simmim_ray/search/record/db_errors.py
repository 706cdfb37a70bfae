"""One line on why `--study-db` could not be opened, told apart by cause: no driver module (named, with what to
install), nothing listening, credentials refused, a database that does not exist. Pure Python.

SQLAlchemy wraps the driver's exception (its first line starts `(psycopg.OperationalError) connection failed: ...`,
its second is a link) and Optuna replaces a missing driver module by a generic ImportError whose cause names the
module: both are read here, so the user sees the cause, not the wrapper.
"""
from __future__ import annotations

import re

from simmim_ray.search.record import db_url

# the driver module a dialect imports -> what pip installs it as; our extra where the project declares one
DRIVER_PACKAGES = {
    "psycopg": ('pip install -e ".[postgres]"', "psycopg[binary]"),
    "psycopg2": ("", "psycopg2-binary"),
    "pymysql": ("", "PyMySQL"),
    "MySQLdb": ("", "mysqlclient"),
}

# (pattern in the driver's message, what it means); PostgreSQL (libpq) and MySQL wordings
_CAUSES = (
    (re.compile(r"Connection refused|could not connect to server|Can't connect to MySQL server", re.I),
     "refused"),
    (re.compile(r"password authentication failed|authentication failed|no password supplied|"
                r"role \"[^\"]*\" does not exist|Access denied for user", re.I), "credentials"),
    (re.compile(r"database \"[^\"]*\" does not exist|Unknown database", re.I), "no_database"),
)


def missing_module(e: BaseException) -> str | None:
    """The name of the module an ImportError (or one it was raised from) could not import; None if unnamed."""
    while e is not None:
        if isinstance(e, ImportError) and getattr(e, "name", None):
            return e.name.split(".")[0]
        e = e.__cause__ or e.__context__
    return None


def cause(text: str) -> str:
    """"refused", "credentials", "no_database", or "" for a message of another kind."""
    return next((kind for pattern, kind in _CAUSES if pattern.search(text)), "")


def _first_line(e: BaseException) -> str:
    """SQLAlchemy's first line (`(module.Error) the driver's message`); its second is a link to its docs."""
    return str(e).splitlines()[0] if str(e).strip() else type(e).__name__


def explain(e: BaseException, url: str) -> str:
    """One line after `cannot open the Optuna database: `, its password masked (db_url.scrub)."""
    if isinstance(e, ImportError):
        module = missing_module(e)
        if module is None:
            return db_url.scrub(_first_line(e), url)
        extra, package = DRIVER_PACKAGES.get(module, ("", module))
        how = f"{extra} (or pip install '{package}')" if extra else f"pip install '{package}'"
        return f"its driver module {module!r} is not installed; install it: {how}"
    text = _first_line(e)
    kind = cause(text)
    m = re.search(r'server at "([^"]+)"(?:[^,]*), port (\d+)', text)
    where = f"{m.group(1)}:{m.group(2)}" if m else "the server"
    if kind == "refused":
        return (f"nothing accepts connections at {where} (is the database server running, and is this its "
                f"host and port?)")
    if kind == "credentials":
        user = re.search(r'for user "([^"]*)"', text)
        who = f"user {user.group(1)!r}" if user else "the user"
        return (f"the server at {where} refused the credentials of {who} (wrong password or unknown user)"
                f"{db_url.no_password_hint(url)}")
    if kind == "no_database":
        name = re.search(r'database "([^"]*)"', text)
        what = f"database {name.group(1)!r}" if name else "the database"
        return f"{what} does not exist on the server at {where}; create it first (e.g. createdb)"
    return db_url.scrub(text, url) + db_url.no_password_hint(url)
