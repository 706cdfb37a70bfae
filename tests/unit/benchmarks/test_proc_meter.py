"""benchmarks/proc_meter.py, the one walk of a process tree that the memory and CPU meters and the tests' cluster
helpers share: it must find grandchildren (Ray's workers are the raylet's children, not the driver's), never the
root itself nor an unrelated process, and the meters must attribute what they see to the right role."""
from __future__ import annotations

import os
import subprocess
import sys
import time

from benchmarks.proc_meter import RssMeter, alive, cmdline, descendants, start_time

# a child that starts a grandchild and waits on it: the tree root -> child -> grandchild
GRANDPARENT = ("import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', "
               "'import time; time.sleep(60)  # grandchild']); print(p.pid, flush=True); p.wait()")


def test_descendants_reach_grandchildren_and_nothing_else():
    child = subprocess.Popen([sys.executable, "-c", GRANDPARENT], stdout=subprocess.PIPE, text=True)
    try:
        grandchild = int(child.stdout.readline())
        tree = descendants(os.getpid())
        assert child.pid in tree and grandchild in tree
        assert os.getpid() not in tree and os.getppid() not in tree and len(tree) == len(set(tree))
        assert descendants(child.pid) == [grandchild]
        assert "# grandchild" in cmdline(grandchild)
    finally:
        os.kill(grandchild, 9)
        child.wait(timeout=30)
    assert child.pid not in descendants(os.getpid()) and cmdline(child.pid) == ""  # reaped: gone from the walk


def test_a_zombie_is_not_alive_and_has_no_start_time():
    # the cluster helpers signal a pid only while its start time is unchanged: a zombie or a gone pid has none
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        started = start_time(child.pid)
        assert alive(child.pid) and started is not None and start_time(child.pid) == started
        child.stdin.close()  # it exits; not reaped yet, so a zombie
        deadline = time.monotonic() + 30
        while alive(child.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not alive(child.pid) and start_time(child.pid) is None
    finally:
        child.kill()
        child.wait()
    assert start_time(child.pid) is None


def test_rss_meter_names_the_root_the_driver():
    # a root of our own with no children (this test process may hold a Ray of another test, with its workers)
    root = subprocess.Popen([sys.executable, "-c", "import sys; b = b'x' * (32 * 1024 ** 2); print(1, flush=True); "
                             "sys.stdin.read()"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        root.stdout.readline()  # its heap is allocated
        meter = RssMeter(root.pid, period=0.05)
        meter.sample()
        meter.stop()
        peaks = meter.peaks()
    finally:
        root.stdin.close()
        root.wait(timeout=30)
    assert set(peaks) == {"driver"} and peaks["driver"] > 30 * 1024 ** 2
