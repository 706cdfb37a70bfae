"""Property-based tests (Hypothesis) of the safe walk (paths.walk_files) on generated trees of files, nested
folders, links (back to the root, across folders, out of the tree, dangling, loops), hard links, FIFOs and empty
folders: every real file is listed once, under the folder it really lies in (or once through a link out of the
tree), so the counts never exceed the real files and no file is two rows (in two splits, or two classes)."""
from __future__ import annotations

import os
import tempfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simmim_ray.config import Config
from simmim_ray.data import folder_walk
from simmim_ray.data.parquet_files import parquet_files
from simmim_ray.data.scan import scan
from simmim_ray.errors import UserError

# the skeleton of every tree: folders under the root (two class folders for image folders), and out/, a sibling
# folder outside the tree that links may lead to
INSIDE = ["c0", "c0/sub", "c0/sub/deep", "c1", "c1/sub"]
OUTSIDE = ["out", "out/o1"]
ROWS = 3  # rows per Parquet file

PROPS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])

OPS = st.lists(st.tuples(
    st.sampled_from(["dirlink", "filelink", "dangling", "loop", "fifo", "empty", "hardlink"]),
    st.integers(0, len(INSIDE) - 1),  # the folder the entry goes in
    st.integers(0, 99),  # picks the link's target
    st.booleans()), max_size=8)  # a data file's extension (else .txt)


def build(base: str, files: list[int], ops: list[tuple], ext: str, content: bytes) -> tuple[str, set]:
    """The tree under base/root; -> (root, the (dev, ino) of each real data file a walk must reach once, if its
    links out of the tree are followed)."""
    root = os.path.join(base, "root")
    folders = [os.path.join(root, d) for d in INSIDE] + [os.path.join(base, d) for d in OUTSIDE]
    for d in folders:
        os.makedirs(d)
    real = []
    for d, n in zip(folders, files):
        for i in range(n):
            path = os.path.join(d, f"f{i}{ext}")
            with open(path, "wb") as f:
                f.write(content)
            real.append(path)
    for k, (op, where, pick, data_ext) in enumerate(ops):
        name = os.path.join(folders[where], f"x{k}" + (ext if data_ext else ".txt"))
        targets = [root, *folders] if op == "dirlink" else real
        if op in ("dirlink", "filelink", "hardlink") and targets:
            target = targets[pick % len(targets)]
            if op == "hardlink":
                if os.path.dirname(target) != folders[where]:  # across folders a hard link is a second file
                    continue
                os.link(target, name)
            else:
                os.symlink(target, name)
        elif op == "dangling":
            os.symlink(os.path.join(base, "gone" + ext), name)
        elif op == "loop":
            os.symlink(name, name)
        elif op == "fifo":
            os.mkfifo(name)
        elif op == "empty":
            os.makedirs(name)
    return root, real


def inode(path: str) -> tuple[int, int]:
    st_ = os.stat(path)
    return st_.st_dev, st_.st_ino


def links_out(folder: str, root: str, ext: str) -> list[str]:
    """The real paths that the links under `folder` lead to out of the tree: folders, and data files (a link to a
    file is a data file only by its own name)."""
    root_real = os.path.realpath(root)
    out = []
    for d, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            path = os.path.join(d, name)
            if not os.path.islink(path) or not os.path.exists(path):
                continue
            target = os.path.realpath(path)
            if (os.path.isdir(path) or name.endswith(ext)) and not (
                    target == root_real or target.startswith(root_real + os.sep)):
                out.append(target)
    return out


def reachable(folder: str, root: str, real: list[str], ext: str) -> set[tuple[int, int]]:
    """The real files a walk of `folder` must list: those lying in it, and those its links out of the tree lead
    to (links are only made in the tree, so out/ holds plain files)."""
    out = {inode(p) for p in real if p.startswith(folder + os.sep)}
    for target in links_out(folder, root, ext):
        out |= {inode(p) for p in real if p == target or p.startswith(target + os.sep)}
    return out


def overlap(a: list[str], b: list[str]) -> bool:
    return any(x == y or x.startswith(y + os.sep) or y.startswith(x + os.sep) for x in a for y in b)


@PROPS
@given(files=st.lists(st.integers(0, 3), min_size=len(INSIDE) + len(OUTSIDE), max_size=len(INSIDE) + len(OUTSIDE)),
       ops=OPS)
def test_image_folder_lists_each_real_file_once_in_its_class(files, ops):
    files[0] = max(files[0], 1)  # each class holds a file of its own: a class without images is refused
    files[3] = max(files[3], 1)
    with tempfile.TemporaryDirectory() as base:
        root, real = build(base, files, ops, ".png", b"not decoded by the listing")
        classes = folder_walk.class_names(root)
        assert classes == ["c0", "c1"]
        listed = {}
        for cls in classes:
            rels = folder_walk.class_files(root, cls)
            inodes = [inode(os.path.join(root, r)) for r in rels]
            assert all(r.startswith(cls + "/") for r in rels)
            assert len(set(inodes)) == len(inodes)  # no file twice in a class
            assert set(inodes) == reachable(os.path.join(root, cls), root, real, ".png")  # and none missed
            listed[cls] = set(inodes)
        cfg = Config().with_overrides({"data.source": "imagefolder", "data.path": root})
        c0, c1 = (links_out(os.path.join(root, c), root, ".png") for c in classes)
        if overlap(c0, c1):
            with pytest.raises(UserError, match="both reach .* through symbolic links"):
                scan(cfg)
            return
        assert not listed["c0"] & listed["c1"]  # no file in two classes
        plan = scan(cfg)
        assert sum(plan.sizes.values()) == len(listed["c0"]) + len(listed["c1"])  # each file one row, one split


@PROPS
@given(files=st.lists(st.integers(0, 2), min_size=len(INSIDE) + len(OUTSIDE), max_size=len(INSIDE) + len(OUTSIDE)),
       ops=OPS)
def test_parquet_listing_reads_each_real_file_once(files, ops):
    files[0] = max(files[0], 1)
    table = pa.table({"image": pa.array([b"x"] * ROWS, pa.binary()), "label": pa.array([0, 1, 2], pa.int64())})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    with tempfile.TemporaryDirectory() as base:
        root, real = build(base, files, ops, ".parquet", sink.getvalue().to_pybytes())
        bad = [os.path.join(d, n) for d, _, names in os.walk(root) for n in names
               if n.endswith(".parquet") and not os.path.isfile(os.path.join(d, n))]
        if bad:  # a FIFO, a dangling link or a loop named .parquet: refused, never read
            with pytest.raises(UserError, match="every .parquet file of a dataset must be a regular file"):
                parquet_files(root)
            return
        _, _, rels = parquet_files(root)
        inodes = [inode(os.path.join(root, r)) for r in rels]
        assert len(set(inodes)) == len(inodes)
        assert set(inodes) == reachable(root, root, real, ".parquet")
        plan = scan(Config().with_overrides({"data.source": "parquet", "data.path": root}))
        assert sum(plan.sizes.values()) == ROWS * len(inodes)
        assert np.isfinite(plan.thresholds).all()
