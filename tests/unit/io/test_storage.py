"""simmim_ray.io.storage: local paths and URIs through pyarrow, the shared-storage rule, and a real S3 API (moto)."""
from __future__ import annotations


import pyarrow.fs as pafs
import pytest

from benchmarks.s3_server import moto_s3
from simmim_ray.io import storage
from simmim_ray.errors import UserError


def test_local_path_resolves_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fs, path, for_ray = storage.resolve_storage("exp")
    assert isinstance(fs, pafs.LocalFileSystem)
    # Ray resolves relative paths against each worker's cwd, so Ray must get the absolute one
    assert path == for_ray == str(tmp_path / "exp")


def test_file_uri_is_the_local_path(tmp_path):
    fs, path, for_ray = storage.resolve_storage(f"file://{tmp_path}/exp/")
    assert isinstance(fs, pafs.LocalFileSystem) and path == for_ray == str(tmp_path / "exp")


def test_s3_uri_keeps_its_query_for_ray():
    uri = "s3://bucket/some/prefix/?region=eu-west-1&endpoint_override=127.0.0.1:9&scheme=http"
    fs, path, for_ray = storage.resolve_storage(uri)
    assert isinstance(fs, pafs.S3FileSystem) and fs.region == "eu-west-1"
    assert path == "bucket/some/prefix"
    # Ray opens the URI with pyarrow again: it must carry the same endpoint, and no trailing slash
    assert for_ray == "s3://bucket/some/prefix?region=eu-west-1&endpoint_override=127.0.0.1:9&scheme=http"


def test_gs_uri_resolves_to_gcs():
    fs, path, _ = storage.resolve_storage("gs://bucket/exp/")
    assert isinstance(fs, pafs.GcsFileSystem) and path == "bucket/exp"


@pytest.mark.parametrize("uri, words", [
    ("", "empty"),
    ("ftp://host/x", "'ftp://' is not supported"),
    ("s3://", "names no bucket"),
    ("file://otherhost/x", "not a host"),
    ("gs://b/x?bogus=1", "pyarrow cannot open it: Unexpected query parameter"),
    ("s3://b/x?region=us-east-1&access_key=AKIA&secret_key=s", "carries credentials (access_key, secret_key)"),
])
def test_bad_storage_uris_are_one_line_user_errors(uri, words):
    with pytest.raises(UserError) as e:
        storage.resolve_storage(uri)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_is_node_local():
    assert storage.is_node_local("exp") and storage.is_node_local("/abs") and storage.is_node_local("file:///x")
    assert not storage.is_node_local("s3://b/x") and not storage.is_node_local("gs://b/x")


def test_join_keeps_query_last():
    assert storage.join("s3://b/p?scheme=http", "exp", "/t/") == "s3://b/p/exp/t?scheme=http"
    assert storage.join("/a/b", "c") == "/a/b/c"


def test_local_helpers_roundtrip(tmp_path):
    uri = f"file://{tmp_path}/a/b/blob.bin"
    assert not storage.exists(uri)
    storage.write_bytes(uri, b"\x00\x01data")
    assert storage.exists(uri) and storage.read_bytes(uri) == b"\x00\x01data"
    storage.makedirs(str(tmp_path / "c" / "d"))
    assert (tmp_path / "c" / "d").is_dir()


def test_single_node_accepts_local_paths():
    storage.check_shared_storage("experiments", 1, probe=lambda p: pytest.fail("no probe on one node"))


def test_object_store_never_needs_a_probe():
    storage.check_shared_storage("s3://b/x?region=us-east-1", 8, probe=lambda p: pytest.fail("not probed"))


def test_multi_node_refuses_a_path_some_nodes_cannot_see(tmp_path):
    with pytest.raises(UserError) as e:
        storage.check_shared_storage(str(tmp_path), 3, probe=lambda p: ["n2"])
    msg = str(e.value)
    assert "1 of 3 nodes cannot see it" in msg and "s3://" in msg and "NFS" in msg and "2.7" in msg


def test_multi_node_refuses_a_local_path_it_cannot_check(tmp_path):
    """Not connected to Ray (probe -> None): refuse rather than fail mid-search."""
    with pytest.raises(UserError, match="the cluster has 2 nodes"):
        storage.check_shared_storage(f"file://{tmp_path}", 2, probe=lambda p: None)


def test_multi_node_accepts_a_mount_every_node_sees(tmp_path):
    seen = []
    storage.check_shared_storage(str(tmp_path), 2, probe=lambda p: seen.append(p) or [])
    assert seen == [str(tmp_path)]


def test_s3_roundtrip_against_moto_server(monkeypatch):
    with moto_s3() as s3:
        for k, v in s3.env.items():
            monkeypatch.setenv(k, v)
        base = s3.uri("exp")
        target = storage.join(base, "trial_0", "metrics.json")
        assert not storage.exists(target)
        storage.write_bytes(target, b'{"val_accuracy": 0.9}')
        assert storage.exists(target) and storage.read_bytes(target) == b'{"val_accuracy": 0.9}'
        fs, path, for_ray = storage.resolve_storage(base)
        names = [i.path for i in fs.get_file_info(pafs.FileSelector(path, recursive=True))]
        assert f"{s3.bucket}/exp/trial_0/metrics.json" in names
        # what Ray gets resolves to the same server
        fs2, path2 = pafs.FileSystem.from_uri(for_ray)
        assert fs2.get_file_info(f"{path2}/trial_0/metrics.json").size == len(b'{"val_accuracy": 0.9}')
        storage.check_shared_storage(base, 4)  # an object store is shared by every node: no probe, no error
