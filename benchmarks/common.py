"""Shared pieces of the benchmarks: machine description, a FLOP/s limit probe, interleaved timing, RESULTS.md.

Every benchmark runs as a module from the repository root (`python -m benchmarks.NAME`), so it imports the
product and these pieces as packages (`from benchmarks.common import ...`), with no sys.path edits.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent  # the repository: default inputs and outputs are named from it
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
HEADER = ("# Benchmark results\n\nWritten by the scripts in `benchmarks/` (each replaces its own section). "
          "Numbers are from the machine named in each section; on a shared machine they move from run to run.\n")

# Dense bf16 tensor-core peak (no sparsity) from the vendors' data sheets, for MFU on GPUs.
GPU_BF16_PEAK = {
    "H200": 989.4e12, "H100 SXM": 989.4e12, "H100 PCIe": 756.0e12, "H100": 989.4e12, "GH200": 989.4e12,
    "A100": 312.0e12, "L40S": 362.1e12, "L4": 121.0e12, "A10G": 70.0e12, "A10": 125.0e12,
    "B200": 2250.0e12,
}


# ---- machine -----------------------------------------------------------------------------------
def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def machine_info(device: str = "cpu") -> dict:
    """What the numbers were measured on; the load average says how contended the machine was."""
    import torch

    info = {"cpu": cpu_model(), "cores": usable_cores(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "python": platform.python_version(),
            "load_avg_1m": round(os.getloadavg()[0], 2)}
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def describe(info: dict) -> str:
    parts = [f"{info['cpu']}, {info['cores']} cores usable, torch {info['torch']} ({info['threads']} threads)"]
    if "gpu" in info:
        parts.append(f"GPU {info['gpu']}")
    parts.append(f"load average {info['load_avg_1m']} at start")
    return "; ".join(parts)


# ---- FLOP/s limit ------------------------------------------------------------------------------
def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def matmul_peak(device: str = "cpu", dtype=None, n: int | None = None, reps: int = 5,
                min_seconds: float = 0.2, backend: str = "blas") -> float:
    """The machine's practical FLOP/s limit: the best of `reps` timings of a large square matmul (2 n^3 FLOPs).

    fp32 on CPU (n=2048 by default), bf16 on GPU (n=8192). Best, not median: a limit, measured on a machine that
    others may be using at the same time. `backend="onednn"` (CPU only) times oneDNN's fp32 GEMM instead of
    `torch.mm` (MKL/OpenBLAS): on AMD CPUs MKL runs AVX2 code and reaches about half of what the cores can do.
    """
    import torch

    gpu = device.startswith("cuda")
    dtype = dtype or (torch.bfloat16 if gpu else torch.float32)
    n = n or (8192 if gpu else 2048)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    if backend == "onednn":
        def mm():
            return torch.ops.mkldnn._linear_pointwise(a, b, None, "none", [], "")
    else:
        def mm():
            return torch.mm(a, b)
    mm()
    sync(device)
    best = float("inf")
    for _ in range(reps):
        k, t0 = 0, time.perf_counter()
        while True:  # enough calls per timing that a GPU's launch latency does not count
            mm()
            k += 1
            sync(device)
            if time.perf_counter() - t0 >= min_seconds or not gpu:
                break
        best = min(best, (time.perf_counter() - t0) / k)
    return 2.0 * n ** 3 / best


def cpu_limits(n: int = 2048) -> dict[str, float]:
    """fp32 GEMM FLOP/s on this CPU through the BLAS (`torch.mm`) and through oneDNN, where PyTorch has it."""
    import torch

    out = {"torch.mm (BLAS)": matmul_peak("cpu", n=n)}
    if torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise"):
        out["oneDNN"] = matmul_peak("cpu", n=n, backend="onednn")
    return out


def gpu_spec_peak(name: str) -> float | None:
    """Data-sheet dense bf16 FLOP/s for a GPU name (`NVIDIA H100 80GB HBM3`), longest key match; None if unknown."""
    hits = [k for k in GPU_BF16_PEAK if k.lower() in name.lower()]
    return GPU_BF16_PEAK[max(hits, key=len)] if hits else None


# ---- timing ------------------------------------------------------------------------------------
def interleave(runners: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Call each runner once per round, alternating the order every round (ABBA...), so that contention from
    other processes hits every side alike. Each runner returns one measurement; returns them per name."""
    out: dict[str, list[float]] = {name: [] for name in runners}
    names = list(runners)
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            out[name].append(runners[name]())
    return out


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def spread(xs: list[float]) -> str:
    """`median (min-max)` for a table cell."""
    return f"{median(xs):.1f} ({min(xs):.0f}-{max(xs):.0f})" if xs else "n/a"


def si(x: float, unit: str = "FLOP/s") -> str:
    for scale, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M")):
        if abs(x) >= scale:
            return f"{x / scale:.3g} {prefix}{unit}"
    return f"{x:.3g} {unit}"


# ---- RESULTS.md --------------------------------------------------------------------------------
def command_line() -> str:
    """How this process was started, as a user would type it (`python -m benchmarks.x --flag`; a script run by
    its path, `python benchmarks/x.py`, is named by its path)."""
    argv = list(sys.argv)
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None:  # python -m: argv[0] is the module's file
        return " ".join(["python", "-m", spec.name, *argv[1:]])
    with contextlib.suppress(ValueError):
        argv[0] = os.path.relpath(argv[0], ROOT)
    return " ".join(["python", *argv])


def write_result(section: str, command: str, body_markdown: str, path: str | os.PathLike | None = None,
                 device: str = "cpu", info: dict | None = None) -> Path:
    """Replace (or append) the section `## {section}` of RESULTS.md with the command, the machine (`info`, taken
    when the run started; else now), the date and `body_markdown`. Other sections are kept as they are. Safe
    against concurrent writers (file lock, atomic rename). Returns the path written."""
    target = Path(path) if path is not None else RESULTS
    block = (f"## {section}\n\n"
             f"Command: `{command}`  \n"
             f"Machine: {describe(info or machine_info(device))}  \n"
             f"Date: {_dt.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}\n\n"
             f"{body_markdown.strip()}\n")
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_name(target.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        text = target.read_text() if target.exists() else HEADER
        text = replace_section(text, section, block)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, target)
    return target


def publish(name: str, body_markdown: str, args, info: dict | None = None) -> None:
    """The end of every benchmark's main: print the result and, unless `--no-write`, store it as the section
    `name` (with ` (--quick)` for quick runs) of `--results` (default RESULTS.md)."""
    print(body_markdown, flush=True)
    if args.no_write:
        return
    section = name + (" (--quick)" if args.quick else "")
    path = write_result(section, command_line(), body_markdown, args.results, info=info)
    print(f"wrote section '{section}' of {path}")


def replace_section(text: str, section: str, block: str) -> str:
    """`text` with the `## {section}` block (up to the next `## ` heading) replaced by `block`, or appended."""
    pattern = re.compile(rf"^## {re.escape(section)}[ \t]*\n.*?(?=^## |\Z)", re.S | re.M)
    block = block.rstrip("\n") + "\n\n"
    if pattern.search(text):
        return pattern.sub(lambda _: block, text, count=1).rstrip("\n") + "\n"
    return text.rstrip("\n") + "\n\n" + block.rstrip("\n") + "\n"


def write_marked_block(path: str, tag: str, name: str, body: str) -> None:
    """Replace the text between `<!-- TAG:NAME -->` and `<!-- /TAG:NAME -->` in the markdown file `path` (appending
    the block if absent, creating the file if needed); written atomically, so a reader never sees half a file."""
    begin, end = f"<!-- {tag}:{name} -->", f"<!-- /{tag}:{name} -->"
    block = f"{begin}\n{body.strip()}\n{end}"
    text = open(path).read() if os.path.exists(path) else "# Digits numbers\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + block
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as fh:
        fh.write(text.rstrip("\n") + "\n")
    os.replace(tmp, path)


# ---- files shared by processes -------------------------------------------------------------------
@contextlib.contextmanager
def locked(path: str):
    """An exclusive lock on `path + ".lock"` (blocking), for the read-modify-write of a shared result file."""
    with open(path + ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def atomic_write_text(path: str, text: str) -> None:
    """Writes `path` through a temporary file and a rename: a reader never sees half a file."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def atomic_write_json(path: str, data) -> None:
    import json

    atomic_write_text(path, json.dumps(data, indent=None, separators=(",", ":")) + "\n")
