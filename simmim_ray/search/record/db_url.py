"""The password of a database URL (`--study-db`): shown as *** in every message, never written to disk.

settings.json and the ledger keep the URL without its password (`postgresql://user@host/db`); messages show
`postgresql://user:***@host/db`. A search keeps the password given on its command line in memory only. The URL it
connects with takes the password from SIMMIM_RAY_STUDY_DB_PASSWORD when it holds none (so does `--resume`, whose
stored URL holds none); without that variable the database driver's own defaults apply (PostgreSQL: PGPASSWORD,
~/.pgpass).

A URL is split as SQLAlchemy splits it (Optuna connects through SQLAlchemy; tests/unit/search/test_db_url.py checks
that the two agree), so what is hidden is what the driver would send as the password; a query parameter a driver also
takes a password from (`?password=...`) is hidden too. Pure Python.
"""
from __future__ import annotations

import os
import re
from urllib.parse import quote, quote_plus, unquote, unquote_plus

from simmim_ray.errors import PATH_CHARS, UserError, excerpt

PASSWORD_ENV = "SIMMIM_RAY_STUDY_DB_PASSWORD"
MASK = "***"
SECRET_KEYS = ("password", "passwd", "pwd", "sslpassword")  # query parameters drivers read a password from
# SQLAlchemy's URL pattern (sqlalchemy.engine.url._parse_url) up to the end of the user information
_USERINFO = re.compile(r"(?P<name>[\w+]+)://(?:(?P<username>[^:/]*)(?::(?P<password>[^@]*))?@)?")


def _password_span(url: str) -> tuple[int, int] | None:
    """Where `url`'s password is. SQLAlchemy ends a password at its first '@' and takes the rest for the host, so
    past a raw '@' in a password the span runs to the URL's last '@': no piece of it shows."""
    m = _USERINFO.match(url)
    if not m or m.group("password") is None:
        return None
    later = url.rfind("@", m.end())
    end = later if later != -1 else m.end("password")
    return (m.start("password"), end) if end > m.start("password") else None


def _query(url: str) -> tuple[int, list[str]]:
    """-> (where the query starts, after its '?'; -1 without one), its `key=value` pairs."""
    m = _USERINFO.match(url)
    q = url.find("?", m.end() if m else 0)
    return (q + 1, url[q + 1:].split("&")) if q != -1 else (-1, [])


def _secret_pair(pair: str) -> bool:
    key, sep, value = pair.partition("=")
    return bool(sep and value) and unquote_plus(key).lower() in SECRET_KEYS


def passwords(url: str) -> list[str]:
    """The passwords `url` holds, as the driver gets them (percent-decoded)."""
    span = _password_span(url)
    out = [unquote(url[span[0]:span[1]])] if span else []
    return out + [unquote_plus(p.partition("=")[2]) for p in _query(url)[1] if _secret_pair(p)]


def _rewrite(url: str, mask: bool) -> str:
    """`url` with each password shown as MASK (`mask`), or removed with its ':' or query parameter."""
    q, pairs = _query(url)
    if any(map(_secret_pair, pairs)):
        kept = [f"{p.partition('=')[0]}={MASK}" if _secret_pair(p) else p for p in pairs
                if mask or not _secret_pair(p)]
        url = url[:q - 1] + ("?" + "&".join(kept) if kept else "")
    span = _password_span(url)
    if span:
        url = url[:span[0]] + MASK + url[span[1]:] if mask else url[:span[0] - 1] + url[span[1]:]
    return url


def masked(url: str) -> str:
    """`url` as messages show it: `postgresql://user:***@host/db`."""
    return _rewrite(url, mask=True)


def without_password(url: str) -> str:
    """`url` as it is stored: `postgresql://user@host/db`."""
    return _rewrite(url, mask=False)


def with_password(url: str, password: str) -> str:
    """`url` with `password` (percent-encoded) when it has a user and no password of its own."""
    m = _USERINFO.match(url)
    if not password or not m or not m.group(0).endswith("@") or passwords(url):
        return url
    at = m.end() - 1
    return url[:at] + ("" if m.group("password") is not None else ":") + quote(password, safe="") + url[at:]


def connect_url(url: str) -> str:
    """The URL to connect with: the password from SIMMIM_RAY_STUDY_DB_PASSWORD where `url` holds none."""
    return with_password(url, os.environ.get(PASSWORD_ENV, ""))


def _ambiguous(url: str) -> bool:
    """A raw '@' in the password: the driver takes what follows it for the host."""
    m = _USERINFO.match(url)
    return bool(m and m.group("password") is not None and url.find("@", m.end()) != -1)


def scrub(text: str, url: str) -> str:
    """`text` (a driver's message about `url`) with every spelling of `url`'s passwords shown as MASK."""
    if _ambiguous(url):  # the driver split the password: any piece of its message may quote a piece of it
        return "(the driver's message is not shown: it would quote part of the password)"
    text = text.replace(url, masked(url))
    span = _password_span(url)
    spellings = {url[span[0]:span[1]]} if span else set()
    for p in passwords(url):
        spellings |= {p, quote(p, safe=""), quote(p), quote(p, safe=" +"), quote_plus(p)}
    for s in sorted(spellings - {""}, key=len, reverse=True):  # longest first: a shorter one may be inside it
        text = text.replace(s, MASK)
    return text


def no_password_hint(url: str) -> str:
    """What to say when a connection without a password failed: where the password comes from."""
    m = _USERINFO.match(url)
    if not m or not m.group("username") or passwords(url) or os.environ.get(PASSWORD_ENV):
        return ""
    return f" (no password given: a password is never stored with the experiment; set {PASSWORD_ENV})"


def check(url: str, flag: str) -> None:
    """Refuses a URL whose password holds a raw '@': the driver would take part of the password for the host."""
    if _ambiguous(url):
        raise UserError(f"{flag} {excerpt(masked(url), PATH_CHARS)}: a password must be percent-encoded ('@' as "
                         f"%40, ':' as %3A, '/' as %2F, '%' as %25), but this URL holds a second '@' after it")
