"""One driver per experiment (simmim_ray/search/record/lease.py): a second driver is refused in one line naming the
holder; a holder that died leaves a lease the next driver takes; a new search never joins another search's study."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from benchmarks.s3_server import moto_s3
from simmim_ray.cli import main
from simmim_ray.errors import UserError
from simmim_ray.search.record import lease


def test_second_holder_is_refused_with_the_holders_pid_host_and_lease(tmp_path):
    exp = str(tmp_path / "exps" / "x")
    held = lease.acquire(exp)
    with pytest.raises(UserError) as e:
        lease.acquire(exp)
    msg = str(e.value)
    assert f"is in use by pid {os.getpid()} on host {socket.gethostname()} since " in msg
    assert f"(lease {exp}/.lease)" in msg and "\n" not in msg
    held.release()
    assert not os.path.exists(exp)  # the lease made the directory and nothing else was written: gone again
    lease.acquire(exp).release()


def test_release_keeps_an_experiment_directory_that_holds_files(tmp_path):
    exp = tmp_path / "x"
    held = lease.acquire(str(exp))
    (exp / "settings.json").write_text("{}")
    held.release()
    assert sorted(os.listdir(exp)) == ["settings.json"]


def test_lease_of_a_killed_holder_is_taken(tmp_path):
    """SIGKILL leaves the lease file behind, with the dead holder's pid in it: the lock went with the process."""
    exp = str(tmp_path / "x")
    ready = tmp_path / "ready"
    code = (f"import time; from simmim_ray.search.record.lease import acquire; acquire({exp!r}); "
            f"open({str(ready)!r}, 'w').close(); time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.time() + 60
        while not ready.exists():
            assert proc.poll() is None and time.time() < deadline
            time.sleep(0.05)
        with pytest.raises(UserError, match=f"in use by pid {proc.pid} "):
            lease.acquire(exp)
    finally:
        proc.kill()
        proc.wait()
    assert os.path.exists(os.path.join(exp, ".lease"))
    lease.acquire(exp).release()


@pytest.fixture
def no_ray(monkeypatch):
    import simmim_ray.train.ray_init as ray_init

    def stop(*a, **k):
        raise AssertionError("Ray was started")

    monkeypatch.setattr(ray_init, "init_ray", stop)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


def run_cli(argv, capsys) -> tuple[int, str]:
    try:
        rc = main(argv)
    except SystemExit as e:
        rc = e.code
    return rc, capsys.readouterr().err


def test_second_search_on_one_experiment_exits_2_naming_the_holder(tmp_path, capsys, no_ray):
    """The first driver holds the lease (here: this process) and has not written settings.json yet: the second
    passes every other check and is refused before Ray starts."""
    (tmp_path / "s.yaml").write_text("params:\n  mask.ratio: {uniform: [0.4, 0.8]}\n")
    held = lease.acquire(str(tmp_path / "exps" / "s"))
    try:
        rc, err = run_cli(["search", str(tmp_path / "s.yaml"), "--storage-path", str(tmp_path / "exps"),
                           "--target-accuracy", "0.5"], capsys)
    finally:
        held.release()
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1, err
    assert f"is in use by pid {os.getpid()} on host " in lines[0] and "wait for it or stop it" in lines[0]


def test_new_search_refuses_a_study_db_holding_its_study(tmp_path, capsys, no_ray):
    import optuna

    db = f"sqlite:///{tmp_path}/shared.db"
    optuna.create_study(study_name="s", storage=db)
    capsys.readouterr()  # Optuna's log line
    (tmp_path / "s.yaml").write_text("params:\n  mask.ratio: {uniform: [0.4, 0.8]}\n")
    argv = ["search", str(tmp_path / "s.yaml"), "--storage-path", str(tmp_path / "exps"), "--target-accuracy",
            "0.5", "--study-db", db]
    rc, err = run_cli(argv, capsys)
    assert rc == 2, err
    assert err.strip() == (f"simmim-ray: error: --study-db {db!r} already holds an Optuna study 's' that is not "
                           f"this experiment's (a new search would join it); give another --name or --study-db, or "
                           f"continue its search with --resume")
    assert not (tmp_path / "exps" / "s").exists()


def test_s3_lease_is_exclusive_and_a_stale_one_is_taken_over(monkeypatch):
    from simmim_ray.search.record import lease_s3

    with moto_s3() as s3:
        for k, v in s3.env.items():
            monkeypatch.setenv(k, v)
        exp = s3.uri("exps/x")
        held = lease.acquire(exp)
        with pytest.raises(UserError, match=f"in use by pid {os.getpid()} on host "):
            lease.acquire(exp)
        # a lease whose heartbeat is older than STALE_S (here: any) belongs to a driver that is gone: taken over
        monkeypatch.setattr(lease_s3, "STALE_S", 0.0)
        second = lease.acquire(exp)
        assert second.uri.startswith(f"s3://{s3.bucket}/exps/x/.lease")
        held.release()  # no longer its lease: it must not delete the new holder's
        client, bucket, key = lease_s3.client_and_key(second.uri)
        assert lease.Owner.from_bytes(client.get_object(Bucket=bucket, Key=key)["Body"].read()) is not None
        second.release()
        monkeypatch.setattr(lease_s3, "STALE_S", 3600.0)
        lease.acquire(exp).release()  # released: free again


def test_s3_reclaimers_of_one_stale_lease_cannot_both_win(monkeypatch):
    """Two drivers read the same stale lease; the one whose conditional overwrite comes second is refused."""
    from simmim_ray.search.record import lease_s3

    with moto_s3() as s3:
        for k, v in s3.env.items():
            monkeypatch.setenv(k, v)
        lease_uri = s3.uri("exps/y/.lease")
        client, bucket, key = lease_s3.client_and_key(lease_uri)
        dead = lease.Owner(pid=1, host="gone", user="u", since=0.0, heartbeat=0.0)
        client.put_object(Bucket=bucket, Key=key, Body=dead.to_bytes())
        stale = client.get_object(Bucket=bucket, Key=key)["ETag"]
        client.put_object(Bucket=bucket, Key=key, Body=lease.Owner.me().to_bytes(), IfMatch=stale)  # the first
        real_get = client.get_object

        def get_stale(**kw):  # the second read the lease before the first took it over
            got = real_get(**kw)
            got["ETag"] = stale
            got["Body"].read()
            got["Body"] = type("B", (), {"read": staticmethod(dead.to_bytes)})()
            return got

        monkeypatch.setattr(client, "get_object", get_stale)
        with pytest.raises(UserError, match="is in use by another process"):
            lease_s3._take_over_if_stale(client, bucket, key, lease.Owner.me(), s3.uri("exps/y"), lease_uri)


def test_lease_is_released_when_the_search_ends(tmp_path, capsys, monkeypatch):
    """A search that fails after taking the lease (here: at Ray's start) gives it back."""
    import simmim_ray.train.ray_init as ray_init

    monkeypatch.delenv("RAY_ADDRESS", raising=False)

    def fail(*a, **k):
        raise UserError("no Ray here")

    monkeypatch.setattr(ray_init, "init_ray", fail)
    (tmp_path / "s.yaml").write_text("params:\n  mask.ratio: {uniform: [0.4, 0.8]}\n")
    rc, err = run_cli(["search", str(tmp_path / "s.yaml"), "--storage-path", str(tmp_path / "exps"),
                       "--target-accuracy", "0.5"], capsys)
    assert rc == 2 and "no Ray here" in err
    lease.acquire(str(tmp_path / "exps" / "s")).release()
    assert not (tmp_path / "exps" / "s").exists()



def test_s3_lease_of_a_process_gone_from_this_host_is_taken_at_once(monkeypatch):
    """A driver killed here (the usual crash, then --resume on the same machine) does not block for STALE_S."""
    from simmim_ray.search.record import lease_s3

    with moto_s3() as s3:
        for k, v in s3.env.items():
            monkeypatch.setenv(k, v)
        exp = s3.uri("exps/z")
        client, bucket, key = lease_s3.client_and_key(s3.uri("exps/z/.lease"))
        proc = subprocess.Popen([sys.executable, "-c", "pass"])
        proc.wait()
        dead_here = lease.Owner(pid=proc.pid, host=socket.gethostname(), user="u", since=time.time(),
                             heartbeat=time.time())
        client.put_object(Bucket=bucket, Key=key, Body=dead_here.to_bytes())
        lease.acquire(exp).release()
        alive_elsewhere = lease.Owner(pid=proc.pid, host="another-host", user="u", since=time.time(),
                                   heartbeat=time.time())
        client.put_object(Bucket=bucket, Key=key, Body=alive_elsewhere.to_bytes())
        with pytest.raises(UserError, match=f"in use by pid {proc.pid} on host another-host since "):
            lease.acquire(exp)


def test_a_lease_that_cannot_be_written_is_one_line(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(UserError, match=r"file/x/\.lease: cannot take the experiment's lease \(Not a directory\)"):
        lease.acquire(str(tmp_path / "file" / "x"))
