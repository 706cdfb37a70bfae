"""User paths on the driver: made absolute for the workers, output directories checked before anything is
written."""
from __future__ import annotations

import os

import pytest

from simmim_ray.config import Config
from simmim_ray.errors import UserError
from simmim_ray.paths import absolute, check_writable_dir, resolve_config_paths


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
