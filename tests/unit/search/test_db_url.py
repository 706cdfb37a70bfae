"""A password in `--study-db` is shown as *** in every message and written to no file (settings.json, the ledger);
`--resume` takes it from SIMMIM_RAY_STUDY_DB_PASSWORD. Hypothesis draws passwords with the characters URLs treat
specially; every password holds letters no message or file of ours contains (Greek capitals), so any piece of it
that leaks is caught, raw or percent-encoded. No Ray, no database server: connections fail (no driver, a closed
port, an invalid SQLite URL), which is what puts a URL into a message."""
from __future__ import annotations

import json
import os
import tempfile
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import make_url

from simmim_ray.errors import UserError
from simmim_ray.search.record import db_url
from simmim_ray.search.record.experiment import Experiment
from simmim_ray.search.settings import SearchSettings
from simmim_ray.search.record.study_store import optuna_storage

MARKS = "ΣΩΨ"
# a password: URL-special characters and marker letters, at least one of them
PASSWORDS = st.text(alphabet=MARKS + "@:/%#?&+= a", min_size=1, max_size=12).filter(
    lambda p: any(c in MARKS for c in p))
SCHEMES = st.sampled_from(["postgresql+psycopg2", "postgresql", "mysql+pymysql", "sqlite"])


def leaks(text: str) -> bool:
    """Any marker letter, raw or percent-encoded (either case of hex digits, once or twice encoded)."""
    upper = text.upper()
    return any(c in text or quote(c).upper() in upper or quote(quote(c)).upper() in upper for c in MARKS)


def url_of(scheme: str, password: str, encoded: bool) -> str:
    host = "" if scheme == "sqlite" else "127.0.0.1:1"  # nothing listens on port 1
    return f"{scheme}://u:{quote(password, safe='') if encoded else password}@{host}/db"


def settings_with(url: str, root: str) -> SearchSettings:
    return SearchSettings(space_path="/s.yaml", name="exp", root=root, target_accuracy=0.5, study_db=url)


def failure(s: SearchSettings, exp: Experiment) -> str:
    with pytest.raises(UserError) as e:
        optuna_storage(s, exp)
    return str(e.value)


@given(scheme=SCHEMES, password=PASSWORDS, extra=st.sampled_from(["", "?sslmode=require", "?password={}&x=1"]))
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_a_percent_encoded_password_is_split_as_sqlalchemy_does_masked_and_stored_without_it(scheme, password, extra):
    url = url_of(scheme, password, encoded=True) + extra.format(quote(password, safe=""))
    assert db_url.passwords(url)[0] == make_url(url).password == password  # what the driver would get
    assert not leaks(db_url.masked(url)) and db_url.masked(url).startswith(f"{scheme}://u:***@")
    stored = db_url.without_password(url)
    assert not leaks(stored) and db_url.passwords(stored) == []
    parsed, back = make_url(stored), make_url(db_url.with_password(stored, password))
    assert (parsed.username, parsed.host, parsed.port, parsed.database, parsed.password) == (
        "u", make_url(url).host, make_url(url).port, "db", None)
    assert back.password == password  # --resume with the password from the environment connects as the original
    assert not leaks(db_url.scrub(f"failed: {url} ({password}, {quote(password)})", url))


@given(scheme=SCHEMES, password=PASSWORDS, encoded=st.booleans())
@example(scheme="postgresql", password="@Σ", encoded=False)  # SQLAlchemy: an empty password, host "Σ@127.0.0.1"
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_no_message_and_no_file_of_the_experiment_holds_the_password(scheme, password, encoded):
    """Raw passwords too (an '@' in one is refused: the driver would take part of it for the host)."""
    url = url_of(scheme, password, encoded)
    with tempfile.TemporaryDirectory() as root:
        exp = Experiment(os.path.join(root, "exp"))
        s = settings_with(url, root)
        try:
            db_url.check(url, "--study-db")
        except UserError as e:
            assert not leaks(str(e)) and "percent-encoded" in str(e)
        assert not leaks(failure(s, exp)) and not leaks(repr(s))
        exp.save_settings(s)
        exp.record_start(s, resumed=False)
        exp.check_unchanged(exp.load_settings())  # a resume compares what was stored: no password either side
        for d, _, files in os.walk(exp.uri):
            for f in files:
                with open(os.path.join(d, f), "rb") as fh:
                    assert not leaks(fh.read().decode("utf-8")), f


def test_resume_takes_the_password_from_the_environment(tmp_path, monkeypatch):
    exp = Experiment(str(tmp_path / "exp"))
    exp.save_settings(settings_with("postgresql+psycopg2://u:Σecret@127.0.0.1:1/db", str(tmp_path)))
    s = exp.load_settings()
    assert s.study_db == "postgresql+psycopg2://u@127.0.0.1:1/db"
    monkeypatch.delenv(db_url.PASSWORD_ENV, raising=False)
    assert db_url.connect_url(s.study_db) == s.study_db  # no password: the driver's own (PGPASSWORD, ~/.pgpass)
    monkeypatch.setenv(db_url.PASSWORD_ENV, "Ωp@ss")
    assert make_url(db_url.connect_url(s.study_db)).password == "Ωp@ss"
    message = failure(s, exp)  # no psycopg2 here; with it, nothing listens on port 1
    assert message.startswith("--study-db 'postgresql+psycopg2://u:***@127.0.0.1:1/db': cannot open the Optuna "
                              "database: ") and not leaks(message)


def test_a_failed_connection_without_a_password_says_where_one_comes_from(tmp_path, monkeypatch):
    monkeypatch.delenv(db_url.PASSWORD_ENV, raising=False)
    s = settings_with("sqlite://u@/x.db", str(tmp_path))  # SQLite refuses a user: fails without a server
    assert failure(s, Experiment(str(tmp_path / "exp"))) == (
        "--study-db 'sqlite://u@/x.db': cannot open the Optuna database: Invalid SQLite URL: sqlite://u@/x.db (no "
        "password given: a password is never stored with the experiment; set SIMMIM_RAY_STUDY_DB_PASSWORD)")


def test_an_older_experiment_that_stored_its_password_resumes_and_forgets_it(tmp_path):
    exp = Experiment(str(tmp_path / "exp"))
    with_pw = settings_with("postgresql://u:Σ@h/db", str(tmp_path))
    old = {**with_pw.to_dict(), "study_db": with_pw.study_db}  # what versions before this one wrote
    exp.ledger.append("search_started", settings=old, inputs={}, resumed=False)
    os.makedirs(exp.uri, exist_ok=True)
    with open(exp.path("settings.json"), "w") as f:
        json.dump(old, f)
    s = exp.load_settings()
    exp.check_unchanged(s)  # not refused as "changed": the stored password is no part of the comparison
    exp.save_settings(s)  # a resume writes settings.json again: without the password now
    assert not leaks(open(exp.path("settings.json")).read())


def test_urls_without_a_password_are_left_as_they_are():
    for url in ("sqlite:////abs/study.db", "sqlite:///rel.db", "notadb://x", "postgresql://u@h/db",
                "postgresql://h:5432/db?sslmode=require", "sqlite:////home/a@b/study.db", "garbage"):
        assert db_url.masked(url) == db_url.without_password(url) == url
        assert db_url.passwords(url) == []
