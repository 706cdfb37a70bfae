"""User paths on the driver: made absolute for the workers, output directories checked before anything is
written, and the path policy (paths.py): kinds named, nothing empty, outputs apart from inputs, the safe walk."""
from __future__ import annotations

import os

import pytest

from simmim_ray.config import Config
from simmim_ray.errors import UserError
from simmim_ray.paths import (absolute, check_apart, check_writable_dir, kind, require_dir, require_file,
                              require_file_if_present, resolve_config_paths, shared_target)


def test_absolute_keeps_uris_and_empty_and_expands_home(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert absolute("data/pq") == str(tmp_path / "data" / "pq")
    assert absolute("~/d") == str(tmp_path / "home" / "d")
    assert absolute("s3://bucket/x") == "s3://bucket/x" and absolute("") == ""
    with pytest.raises(UserError, match="must not hold control characters"):
        absolute("a\x00b", "--output")


@pytest.mark.parametrize("source", ["imagefolder", "parquet", "cifar10"])
def test_relative_data_path_becomes_absolute(tmp_path, monkeypatch, source):
    monkeypatch.chdir(tmp_path)
    cfg = resolve_config_paths(Config().with_overrides({"data.source": source, "data.path": "d"}))
    assert cfg.data.path == str(tmp_path / "d")
    uri = Config().with_overrides({"data.source": "parquet", "data.path": "s3://b/pq"})
    assert resolve_config_paths(uri) is uri
    digits = Config()  # no path to resolve
    assert resolve_config_paths(digits) is digits


def test_writable_dir_refuses_files_and_proc_and_leaves_nothing(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(UserError, match=r"--output '.*file' is a file; give a directory"):
        check_writable_dir(str(f), "--output")
    with pytest.raises(UserError, match=r"lies under '.*file', which is a file"):
        check_writable_dir(str(f / "sub"), "--output")
    with pytest.raises(UserError, match=r"--storage-path '/proc/x/y' cannot be written: "):
        check_writable_dir("/proc/x/y", "--storage-path")
    with pytest.raises(UserError, match="is too long"):
        check_writable_dir(str(tmp_path / ("x" * 300)), "--output")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(UserError, match="which is a broken symbolic link"):
        check_writable_dir(str(tmp_path / "dangling" / "x"), "--output")
    before = sorted(os.listdir(tmp_path))
    assert check_writable_dir(str(tmp_path / "new" / "deeper"), "--output") == str(tmp_path / "new" / "deeper")
    assert sorted(os.listdir(tmp_path)) == before  # the probe left nothing, and nothing was created


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_writable_dir_refuses_read_only(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(UserError, match="cannot be written: Permission denied"):
            check_writable_dir(str(ro / "out"), "--output")
    finally:
        ro.chmod(0o700)


# ---- the policy: what each path is, named in one line ---------------------------------------------------------
def _specials(tmp_path) -> dict[str, str]:
    """A path of each kind the policy names: (kind phrase -> path)."""
    import socket

    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "loop").symlink_to("loop")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("x")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sock"))
    sock.close()
    return {"a named pipe": str(tmp_path / "pipe"), "a symbolic link loop": str(tmp_path / "loop"),
            "a broken symbolic link": str(tmp_path / "dangling"), "a directory": str(tmp_path / "dir"),
            "a file": str(tmp_path / "file"), "a socket": str(tmp_path / "sock"), "a device": "/dev/null"}


def test_each_kind_is_named_where_a_file_or_a_directory_is_expected(tmp_path):
    for what, path in _specials(tmp_path).items():
        assert kind(path) == what
        if what != "a file":
            with pytest.raises(UserError, match=f"^--points 'p' is {what}; give a YAML file$"):
                require_file(path, "--points 'p'", "a YAML file")
        if what != "a directory":
            with pytest.raises(UserError, match=f"^report 'd' is {what}; give a directory$"):
                require_dir(path, "report 'd'")
        if what not in ("a file",):
            with pytest.raises(UserError, match=f"is {what}; give a file$"):
                require_file_if_present(path, "--study-db 'x'")
    require_file_if_present(str(tmp_path / "new.db"), "--study-db 'x'")  # absent: it will be created
    with pytest.raises(UserError, match="^config file 'gone' does not exist$"):
        require_file(str(tmp_path / "gone"), "config file 'gone'")


def test_writable_dir_names_loops_and_pipes(tmp_path):
    specials = _specials(tmp_path)
    with pytest.raises(UserError, match=r"--output '.*/loop/x' lies under '.*/loop', which is a symbolic link loop"):
        check_writable_dir(os.path.join(specials["a symbolic link loop"], "x"), "--output")
    with pytest.raises(UserError, match=r"--output '.*/pipe' is a named pipe; give a directory"):
        check_writable_dir(specials["a named pipe"], "--output")
    with pytest.raises(UserError, match="--output must name a directory, but got an empty value"):
        check_writable_dir("  ", "--output")


def test_outputs_and_inputs_stay_apart(tmp_path):
    src = tmp_path / "imgs"
    (src / "a").mkdir(parents=True)
    (tmp_path / "alias").symlink_to(src / "a")  # the same folder under another name
    with pytest.raises(UserError, match="^OUT 'o' and SRC 's' are the same directory; an output must lie outside"):
        check_apart(str(src), "OUT 'o'", str(src), "SRC 's'")
    with pytest.raises(UserError, match=r"^OUT 'o' lies inside SRC 's'; an output must lie outside its input"):
        check_apart(str(src / "a" / "new"), "OUT 'o'", str(src), "SRC 's'")
    with pytest.raises(UserError, match=r"^OUT 'o' lies inside SRC 's'"):
        check_apart(str(tmp_path / "alias" / "out"), "OUT 'o'", str(src), "SRC 's'")
    with pytest.raises(UserError, match=r"^SRC 's' lies inside OUT 'o'; an input must lie outside the output"):
        check_apart(str(tmp_path), "OUT 'o'", str(src), "SRC 's'")
    check_apart(str(tmp_path / "imgs2"), "OUT", str(src), "SRC")  # a name that only starts like SRC's
    check_apart("s3://b/out", "OUT", str(src), "SRC")  # URIs keep their own rules
    check_apart(str(tmp_path / "out"), "OUT", "", "SRC")


def test_an_empty_data_path_is_refused_for_sources_that_read_one():
    for source, what in (("imagefolder", "an image folder"), ("parquet", "a Parquet file or directory"),
                         ("cifar10", "a CIFAR-10 root")):
        with pytest.raises(UserError, match=f"^data.path must name {what}, but got an empty value$"):
            resolve_config_paths(Config().with_overrides({"data.source": source, "data.path": " "}))


# every path flag of every command, given '' (an unset shell variable): refused by argparse, one line, exit 2
EMPTY_PATH_FLAGS = [
    (["train", "--config", ""], "--config"), (["train", "--output", ""], "--output"),
    (["search", ""], "SPACE"), (["search", "s.yaml", "--storage-path", ""], "--storage-path"),
    (["search", "s.yaml", "--study-db", " "], "--study-db"), (["search", "s.yaml", "--storage", ""], "--storage"),
    (["search", "s.yaml", "--points", ""], "--points"), (["search", "s.yaml", "--config", ""], "--config"),
    (["search", "--resume", ""], "--resume"), (["check", ""], "space"),
    (["check", "s.yaml", "--config", ""], "--config"),
    (["report", ""], "report DIR"), (["convert", "", "out", "--from", "imagefolder"], "convert SRC"),
    (["convert", "imgs", "", "--from", "imagefolder"], "convert OUT"),
]


@pytest.mark.parametrize("argv,flag", EMPTY_PATH_FLAGS, ids=[" ".join(a[:1] + [f]) for a, f in EMPTY_PATH_FLAGS])
def test_every_path_flag_refuses_an_empty_value(argv, flag, capsys):
    from simmim_ray.cli import main

    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1
    assert err[0].startswith("simmim-ray: error: argument ") and f": {flag} must name " in err[0]
    assert err[0].endswith(", but got an empty value")


def test_experiment_files_that_are_pipes_are_refused_not_read(tmp_path):
    """The ledger, settings and inputs are read through io/storage.py: a FIFO there would block `report` forever."""
    from simmim_ray.io import storage

    os.mkfifo(tmp_path / "settings.json")
    with pytest.raises(UserError, match=r"settings.json is a named pipe, not a regular file"):
        storage.read_bytes(str(tmp_path / "settings.json"))
    with pytest.raises(UserError, match=r"settings.json' is a named pipe; give a file"):
        storage.append_line(str(tmp_path / "settings.json"), "{}")
    storage.write_text(str(tmp_path / "ok.json"), "{}")
    assert storage.read_bytes(str(tmp_path / "ok.json")) == b"{}"


# ---- the safe walk ------------------------------------------------------------------------------------------
def test_a_link_loop_in_a_parquet_folder_adds_no_rows(tmp_path):
    """`ln -s . pq/loop` was followed about 40 levels deep: 80 rows counted as 3,280, every image in every split."""
    from data_factory import write_parquet_shards
    from simmim_ray.data.parquet_files import parquet_files
    from simmim_ray.data.scan import scan

    pq_dir = tmp_path / "pq"
    write_parquet_shards(str(pq_dir), n=80, shards=2)
    (pq_dir / "loop").symlink_to(".")
    (pq_dir / "sub").mkdir()
    (pq_dir / "sub" / "up").symlink_to("..")
    (pq_dir / "again.parquet").symlink_to(pq_dir / "part-000.parquet")  # the same file under a second name
    assert parquet_files(str(pq_dir))[2] == ["part-000.parquet", "part-001.parquet"]
    plan = scan(Config().with_overrides({"data.source": "parquet", "data.path": str(pq_dir)}))
    assert sum(plan.sizes.values()) == 80


@pytest.mark.parametrize("bad", ["fifo", "dangling"])
def test_a_parquet_file_that_is_no_regular_file_is_refused(tmp_path, bad):
    from data_factory import write_parquet_shards
    from simmim_ray.data.parquet_files import parquet_files

    write_parquet_shards(str(tmp_path / "pq"), n=8)
    (tmp_path / "pq" / "sub").mkdir()
    target = tmp_path / "pq" / "sub" / "x.parquet"
    os.mkfifo(target) if bad == "fifo" else target.symlink_to(tmp_path / "gone.parquet")
    what = "a named pipe" if bad == "fifo" else "a broken symbolic link"
    with pytest.raises(UserError, match=f"^data.path: sub/x.parquet under '.*' is {what}; every .parquet file"):
        parquet_files(str(tmp_path / "pq"))
    os.remove(target)
    os.mkfifo(tmp_path / "pq" / "_hidden.parquet")  # writers' hidden files are not data, whatever they are
    assert parquet_files(str(tmp_path / "pq"))[2] == ["part-000.parquet", "part-001.parquet"]
    with pytest.raises(UserError, match=r"^data.path: Parquet path '.*_hidden.parquet' is a named pipe; give a "
                                        r"\.parquet file or a directory of them$"):
        parquet_files(str(tmp_path / "pq" / "_hidden.parquet"))


def test_shared_target_finds_nested_targets_of_two_owners():
    assert shared_target([("/x/d", "a"), ("/x/d", "a"), ("/x/e", "b")]) is None
    assert shared_target([("/x/d", "a"), ("/x/d/sub/f.png", "b")]) == ("/x/d/sub/f.png", "a", "b")
    # '/x/d c' sorts between '/x/d' and '/x/d/f' as text: the walk of parents must not lose '/x/d'
    assert shared_target([("/x/d", "a"), ("/x/d c", "a"), ("/x/d/f", "b")]) == ("/x/d/f", "a", "b")
    assert shared_target([("/x/d", "a"), ("/x/dd", "b")]) is None


def test_a_cifar10_batch_that_is_a_pipe_is_refused_not_read(fake_cifar10):
    from simmim_ray.data.sources import cifar10_records

    root, _, _ = fake_cifar10
    batch = os.path.join(root, "cifar-10-batches-py", "data_batch_3")
    os.remove(batch)
    os.mkfifo(batch)
    with pytest.raises(UserError, match="^data.path: CIFAR-10 file 'data_batch_3' is a named pipe; give a file$"):
        cifar10_records(root, train=True, download=False)
