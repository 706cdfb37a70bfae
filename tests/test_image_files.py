"""Walking an image folder safely: symbolic-link loops, FIFOs, dangling links, repeated links."""
from __future__ import annotations

import os
import threading

import pytest

from data_factory import make_image_folder
from simmim_ray.data.image_files import image_folder, read_image_file


def test_same_as_torchvision_on_a_plain_folder(tmp_path):
    from torchvision.datasets import ImageFolder

    make_image_folder(str(tmp_path / "imgs"), classes=3, per_class=4, corrupt=1, truncated=1)
    ours = image_folder(str(tmp_path / "imgs"))
    theirs = ImageFolder(str(tmp_path / "imgs"), loader=lambda p: p)
    assert ours.samples == theirs.samples and ours.classes == theirs.classes and ours.skipped == 0


def test_links_fifos_and_dangling_links(tmp_path):
    root = tmp_path / "imgs"
    info = make_image_folder(str(root), classes=2, per_class=3, corrupt=0, truncated=0)
    n = info["good"]
    c0, c1 = (root / name for name in sorted(os.listdir(root)))
    (c0 / "loop").symlink_to(root)  # a loop back to the root: every file again, forever with os.walk alone
    (c0 / "again.png").symlink_to(next(c0.glob("*.png")))  # a second name for one file
    (c1 / "gone.png").symlink_to(tmp_path / "nowhere.png")  # in class_1: reached through class_0's loop first
    os.mkfifo(c1 / "pipe.png")
    walked = image_folder(str(root))
    assert len(walked.samples) == n  # each real file once
    assert walked.skipped == 2  # the dangling link and the FIFO, each once though the loop reaches them again
    result = {}
    t = threading.Thread(target=lambda: result.update(data=read_image_file(str(c1 / "pipe.png"))), daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive() and result["data"] is None  # a FIFO is not read (it would block)
    assert read_image_file(str(c1 / "gone.png")) is None


def test_no_class_folder_and_empty_class(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="Couldn't find any class folder"):
        image_folder(str(tmp_path / "empty"))
    (tmp_path / "one" / "a").mkdir(parents=True)
    (tmp_path / "one" / "a" / "notes.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match="Found no valid file for the classes a"):
        image_folder(str(tmp_path / "one"))
