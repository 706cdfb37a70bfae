"""Walking an image folder safely, one class at a time: symbolic-link loops, FIFOs, dangling links, repeated links."""
from __future__ import annotations

import os
import threading

from data_factory import make_image_folder
from simmim_ray.data.folder_walk import class_files, class_names, read_file


def _listing(root: str) -> list[tuple[str, int]]:
    return [(os.path.join(root, f), y) for y, c in enumerate(class_names(root)) for f in class_files(root, c)]


def test_same_as_torchvision_on_a_plain_folder(tmp_path):
    from torchvision.datasets import ImageFolder

    make_image_folder(str(tmp_path / "imgs"), classes=3, per_class=4, corrupt=1, truncated=1)
    theirs = ImageFolder(str(tmp_path / "imgs"), loader=lambda p: p)
    assert class_names(str(tmp_path / "imgs")) == theirs.classes
    assert _listing(str(tmp_path / "imgs")) == theirs.samples


def test_links_fifos_and_dangling_links(tmp_path):
    root = tmp_path / "imgs"
    info = make_image_folder(str(root), classes=2, per_class=3, corrupt=0, truncated=0)
    c0, c1 = (root / name for name in sorted(os.listdir(root)))
    (c0 / "loop").symlink_to(root)  # a loop back to the root: every file again, forever with os.walk alone
    (c0 / "other").symlink_to(c1)  # class_1's folder seen from class_0: its files stay class_1's
    (c1 / "steal.png").symlink_to(next(c0.glob("*.png")))  # a link to class_0's file: not a class_1 image
    (c1 / "gone.png").symlink_to(tmp_path / "nowhere.png")
    os.mkfifo(c1 / "pipe.png")
    skipped: list[str] = []
    files = {c: class_files(str(root), c, skipped) for c in class_names(str(root))}
    assert sum(len(v) for v in files.values()) == info["good"]  # each real file once, in the class it lies in
    assert all(f.startswith(c + "/") for c, v in files.items() for f in v)
    assert len(skipped) == 2  # the dangling link and the FIFO
    result = {}
    t = threading.Thread(target=lambda: result.update(data=read_file(str(c1 / "pipe.png"))), daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive() and result["data"] is None  # a FIFO is not read (it would block)
    assert read_file(str(c1 / "gone.png")) is None


def test_a_linked_folder_outside_the_root_is_followed(tmp_path):
    make_image_folder(str(tmp_path / "extra"), classes=1, per_class=3, corrupt=0, truncated=0)
    make_image_folder(str(tmp_path / "imgs"), classes=1, per_class=2, corrupt=0, truncated=0)
    cls = class_names(str(tmp_path / "imgs"))[0]
    extra_cls = os.listdir(tmp_path / "extra")[0]
    (tmp_path / "imgs" / cls / "more").symlink_to(tmp_path / "extra" / extra_cls)
    assert len(class_files(str(tmp_path / "imgs"), cls)) == 5
