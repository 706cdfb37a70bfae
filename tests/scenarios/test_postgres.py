"""`--study-db postgresql://...` against a real PostgreSQL server on loopback (tests/helpers/pg_server.py): the plain URL
works with the driver of the `postgres` extra; a refused connection, refused credentials and a missing database are
each one distinct line (exit 2, password masked); a search killed with SIGKILL (between two of Tune's state saves)
and resumed has every trial once in its study. A missing driver module is named with what to install (no server needed)."""
from __future__ import annotations

import os
import sys

import pytest
from proc_utils import e2e_space

import pg_server
import repo_root
from simmim_ray.cli import main
from simmim_ray.errors import UserError
from simmim_ray.search.record.db_errors import explain, missing_module
from simmim_ray.search.record.experiment import Experiment
from simmim_ray.search.settings import SearchSettings
from simmim_ray.search.record.study_store import optuna_storage
from simmim_ray.train.ray_init import free_port

SECRETS = ("Σ", "%CE%A3", "secret")  # pieces of pg_server.PASSWORD: none may show


@pytest.fixture(scope="module")
def server():
    why = pg_server.skip_reason()
    if why:
        pytest.skip(why)
    s = pg_server.start()
    yield s
    s.stop()


def test_a_missing_driver_module_is_named_with_what_to_install():
    """What Optuna raises when SQLAlchemy cannot import the dialect's driver: a generic ImportError whose cause
    names the module (psycopg for a plain postgresql:// URL under SQLAlchemy 2.1)."""
    def optuna_style(module: str) -> ImportError:
        try:
            try:
                raise ModuleNotFoundError(f"No module named {module!r}", name=module)
            except ImportError as cause:
                raise ImportError("Failed to import DB access module for the specified storage URL. "
                                  "Please install appropriate one.") from cause
        except ImportError as e:
            return e

    url = "postgresql://u:Σ@127.0.0.1:1/db"
    assert missing_module(optuna_style("psycopg")) == "psycopg"
    assert explain(optuna_style("psycopg"), url) == (
        "its driver module 'psycopg' is not installed; install it: pip install -e \".[postgres]\" (or pip install "
        "'psycopg[binary]')")
    assert explain(optuna_style("psycopg2"), url) == (
        "its driver module 'psycopg2' is not installed; install it: pip install 'psycopg2-binary'")


def test_the_postgres_extra_holds_the_driver_of_the_plain_url():
    import tomllib

    from sqlalchemy.engine import make_url

    with open(os.path.join(repo_root.REPO, "pyproject.toml"), "rb") as f:
        extras = tomllib.load(f)["project"]["optional-dependencies"]
    dialect = make_url("postgresql://u@h/db").get_dialect()
    assert dialect.driver == "psycopg", dialect.driver  # what SQLAlchemy imports for the plain URL
    assert any(r.startswith("psycopg[binary]") for r in extras["postgres"])
    assert any(r.startswith("psycopg[binary]") for r in extras["test"])  # the tests below need it


def open_error(url: str, tmp_path) -> str:
    s = SearchSettings(space_path="/s.yaml", name="exp", root=str(tmp_path), target_accuracy=0.5, study_db=url)
    with pytest.raises(UserError) as e:
        optuna_storage(s, Experiment(str(tmp_path / "exp")))
    message = str(e.value)
    assert "\n" not in message and not any(x in message for x in SECRETS), message
    return message


def test_each_connection_failure_has_its_own_line(server, tmp_path):
    port = server.port
    closed = free_port()
    head = f"--study-db 'postgresql://simmim:***@127.0.0.1:{{}}/{{}}': cannot open the Optuna database: "
    assert open_error(server.url(port=closed), tmp_path) == head.format(closed, "postgres") + (
        f"nothing accepts connections at 127.0.0.1:{closed} (is the database server running, and is this its host "
        f"and port?)")
    assert open_error(server.url(password="wrong-Σ"), tmp_path) == head.format(port, "postgres") + (
        f"the server at 127.0.0.1:{port} refused the credentials of user 'simmim' (wrong password or unknown user)")
    assert open_error(server.url("nosuchdb"), tmp_path) == head.format(port, "nosuchdb") + (
        f"database 'nosuchdb' does not exist on the server at 127.0.0.1:{port}; create it first (e.g. createdb)")


def test_the_cli_exits_2_naming_study_db(server, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc = main(["search", e2e_space(tmp_path), "--storage-path", str(tmp_path), "--target-accuracy", "0.5",
               "--study-db", server.url("nosuchdb")])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith("simmim-ray: error: --study-db 'postgresql://simmim:***@127.0.0.1:") and \
        "database 'nosuchdb' does not exist" in err and err.count("\n") == 1
    assert not any(x in err for x in SECRETS)


@pytest.mark.slow
def test_search_on_postgres_killed_between_two_tune_state_saves_and_resumed_runs_every_trial_once(
        server, tmp_path, monkeypatch, join_cluster):
    """test_search_e2e's SIGKILL test, on PostgreSQL: the study lives in the server, the password only in
    SIMMIM_RAY_STUDY_DB_PASSWORD for --resume (settings.json holds none). Tune saves its experiment state as seldom
    as it does on object stores (>= 10 s apart), so a trial starts and finishes between two saves and the restored
    Tune never knows it: its row still comes from the ledger, and the searcher's budget (counted from the study)
    starts no fourth trial."""
    from test_search_e2e import assert_resumed, cli, kill_a_search

    server.createdb("study_kill")
    monkeypatch.setenv("TUNE_GLOBAL_CHECKPOINT_S", "60")
    exp, before, reports_before = kill_a_search(tmp_path, "--study-db", server.url("study_kill"))
    assert "Σ" not in (exp / "settings.json").read_text()
    monkeypatch.setenv("SIMMIM_RAY_STUDY_DB_PASSWORD", pg_server.PASSWORD)
    r = cli("search", "--resume", str(exp))
    assert r.returncode == 0, r.stderr[-3000:]
    # every trial once, its study trial COMPLETE in the server; a trial the kill cut off FAILed there
    assert_resumed(exp, before, reports_before, study_db=server.url("study_kill"))
    assert not (exp / "study.db").exists()  # the study was on the server, not in a local SQLite file


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
