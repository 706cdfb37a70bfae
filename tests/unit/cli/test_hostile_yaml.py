"""A corpus of hostile YAML inputs, given as a config, a search space and --points: each is refused with exit 2 and
one line, quickly, before Ray could start (the bounds live in simmim_ray/io/yamlio.py)."""
from __future__ import annotations

import os
import threading
import time

import pytest

from simmim_ray.cli import main

BOMB = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [" + ",".join([f"*{chr(97 + i)}"] * 9) + "]\n" for i in range(8))

# name -> (file bytes, what the one line must contain)
CORPUS = {
    "alias-bomb": (BOMB.encode(), "more than 10,000 values once its aliases are expanded"),
    "nested-brackets": (b"[" * 3000 + b"]" * 3000, "nested deeper than 64 levels"),
    "nested-mappings": (("a: " + "{a: " * 3000 + "1" + "}" * 3000).encode(), "nested deeper than 64 levels"),
    "ten-megabytes": (b"# padding\n" * 1_000_000, "more than the 250,000 bytes a YAML input may have"),
    "many-values": (("x: [" + ",".join(["1"] * 60_000) + "]\n").encode(), "more than 10,000 values"),
    "not-utf8": (b"params:\n  mask.ratio: {uniform: [0.4, 0.8]}\n# \xff\xfe caf\xe9\n", "is not UTF-8 text"),
    "duplicate-keys": (b"params:\n  mask.ratio: {uniform: [0.4, 0.8]}\nparams:\n  mask.ratio: {uniform: [0.1, 0.2]}\n",
                       "duplicate key 'params'"),
    "python-tag": (b"seed: !!python/object/apply:os.system ['echo pwned']\n", "could not determine a constructor"),
    "python-name": (b"seed: !!python/name:os.system\n", "could not determine a constructor"),
    "recursive-alias": (b"a: &a [*a]\n", "an alias that refers to itself"),
    "huge-integer": (b"seed: " + b"9" * 5000 + b"\n", "an integer of 5000 characters"),
    "nul-byte": (b"seed: 1\x00\n", "unacceptable character #x0000"),
    "two-documents": (b"seed: 1\n---\nseed: 2\n", "expected a single document"),
}
SLOW_S = 10  # generous for a loaded 2-core machine; the bounds make each case take well under a second


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    import ray

    def no_ray(*a, **k):
        raise AssertionError("Ray was started for bad input")

    monkeypatch.setattr(ray, "init", no_ray)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ok.yaml").write_text("params:\n  mask.ratio: {uniform: [0.4, 0.8]}\n")
    return tmp_path


def run_cli(argv, capsys) -> tuple[int, str, float]:
    start = time.perf_counter()
    try:
        rc = main(argv)
    except SystemExit as e:
        rc = e.code
    return rc, capsys.readouterr().err, time.perf_counter() - start


def assert_refused(rc, err, took, needle):
    lines = err.strip().splitlines()
    assert rc == 2, err[-2000:]
    assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
    assert needle in lines[0], lines[0]
    assert len(lines[0]) < 600  # a short excerpt of the input at most
    assert took < SLOW_S, took


@pytest.mark.parametrize("name", sorted(CORPUS))
@pytest.mark.parametrize("role", ["config", "space", "points"])
def test_hostile_file_is_refused_in_one_line(workdir, capsys, name, role):
    data, needle = CORPUS[name]
    path = workdir / f"{name}.yaml"
    path.write_bytes(data)
    argv = {"config": ["train", "--config", str(path), "--output", "out"],
            "space": ["check", str(path)],
            "points": ["search", "ok.yaml", "--storage-path", "exps", "--target-accuracy", "0.5",
                       "--points", str(path)]}[role]
    assert_refused(*run_cli(argv, capsys), needle)


def test_huge_int_range_space(workdir, capsys):
    """1.6e14 candidate depths: refused by the field's rule on the range's end, without listing the range."""
    (workdir / "s.yaml").write_text("params:\n  model.depth: {int: [1, 160000000000000]}\n")
    assert_refused(*run_cli(["check", "s.yaml"], capsys), "`1 <= model.depth <= 256` must hold")


@pytest.mark.parametrize("special", ["fifo", "dev-zero", "directory"])
def test_special_files_do_not_block(workdir, capsys, special):
    path = {"fifo": str(workdir / "pipe.yaml"), "dev-zero": "/dev/zero", "directory": str(workdir)}[special]
    if special == "fifo":
        os.mkfifo(path)
    result = {}
    t = threading.Thread(target=lambda: result.update(out=run_cli(["train", "--config", path, "--output", "o"],
                                                                  capsys)), daemon=True)
    t.start()
    t.join(SLOW_S)
    if t.is_alive():  # unblock the reader so the test run can end, then fail
        with open(path, "w"):
            pass
        pytest.fail(f"--config {path} blocked")
    needle = {"fifo": "is a named pipe", "dev-zero": "is a device", "directory": "is a directory"}[special]
    assert_refused(*result["out"], needle)


def test_long_values_are_cut_in_messages(workdir, capsys):
    (workdir / "c.yaml").write_text("model:\n  arch: " + "v" * 200_000 + "\n")
    rc, err, took = run_cli(["train", "--config", "c.yaml", "--output", "out"], capsys)
    assert_refused(rc, err, took, "`model.arch` must be one of vit, swin, swinv2, but got 'vvvv")
    assert len(err) < 200
