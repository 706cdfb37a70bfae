"""Memory against dataset size: peak private memory (RssAnon) of every role of a streamed run, at N and 10N rows.

Writes Parquet of N and 10N rows with the same rows per file (so only the number of files changes), runs one
epoch of `simmim-ray train --set data.source=parquet` (2 workers, every split streamed: pre-training pool, k-NN
bank, validation, test) on each, and samples the peak RssAnon of the driver, each Train worker and the Ray Data
processes (benchmarks/proc_meter.py). The same on moto's S3 server, and `simmim-ray convert` of image folders of
N and 10N files. Goal: <= +15% from N to 10N for every role.

    python -m benchmarks.data_scaling            # N = 5,000 rows of 64 px noise PNGs (~12 KB), local + S3 + convert
    python -m benchmarks.data_scaling --quick    # N = 150 rows of 128 px (~49 KB), local + convert: CI
"""
from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

from benchmarks import common
from benchmarks.proc_meter import RssMeter

GOAL = 1.15
MiB = 1024 ** 2
TRAIN_SETS = ["model.img_size=16", "model.patch_size=4", "model.embed_dim=32", "model.depth=1", "model.num_heads=2",
              "mask.patch_size=8", "mask.ratio=0.5", "train.epochs=1", "train.warmup_epochs=0",
              "train.batch_size=32", "train.log_images=false", "eval.proxy=none", "eval.protocol=knn",
              "eval.batch_size=64", "data.source=parquet"]


def _png(rng: np.random.Generator, px: int, label: int) -> bytes:
    from PIL import Image

    arr = rng.integers(0, 256, (px, px, 3), dtype=np.uint8)  # noise: PNG cannot shrink it, so bytes ~ 3 px^2
    arr[: px // 4, : px // 4] = 25 * label % 256
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def write_parquet(out: str, rows: int, rows_per_file: int, px: int, classes: int = 10) -> int:
    """Parquet files of `rows_per_file` rows each (one row group per file); returns the bytes written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    os.makedirs(out)
    rng = np.random.default_rng(rows)
    for k, a in enumerate(range(0, rows, rows_per_file)):
        n = min(rows_per_file, rows - a)
        labels = [(a + i) % classes for i in range(n)]
        pq.write_table(pa.table({"image": pa.array([_png(rng, px, y) for y in labels], pa.binary()),
                                 "label": pa.array(labels, pa.int64())}),
                       os.path.join(out, f"part-{k:05d}.parquet"), row_group_size=rows_per_file)
    return sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))


def write_folder(out: str, files: int, px: int, classes: int = 10) -> None:
    rng = np.random.default_rng(files)
    for i in range(files):
        d = os.path.join(out, f"class_{i % classes}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"img_{i:06d}.png"), "wb") as f:
            f.write(_png(rng, px, i % classes))


def metered(cmd: list[str], env: dict, timeout: int) -> tuple[dict[str, int], float]:
    """Runs `cmd`, sampling its process tree; -> (peak RssAnon per role, wall seconds). Fails loudly."""
    t0 = time.time()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    meter = RssMeter(proc.pid)
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        meter.stop()
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:5])} failed (rc={proc.returncode}):\n{out[-4000:]}")
    return meter.peaks(), time.time() - t0


def train_peaks(data_path: str, workdir: str, env: dict) -> tuple[dict[str, int], float]:
    cmd = [sys.executable, "-m", "simmim_ray", "train", "--workers", "2", "--output", workdir]
    for s in [*TRAIN_SETS, f"data.path={data_path}"]:
        cmd += ["--set", s]
    ray_tmp = tempfile.mkdtemp(prefix="rds", dir="/tmp")  # short: Ray's socket paths must stay < 107 bytes
    try:
        return metered(cmd, {**env, "RAY_ADDRESS": "local", "RAY_TMPDIR": ray_tmp}, timeout=1800)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


def table(results: dict[str, tuple[dict, dict]], n: int) -> tuple[str, float]:
    lines = [f"| setting | role | {n:,} rows | {10 * n:,} rows | 10N / N |", "|---|---|---|---|---|"]
    worst = 0.0
    for setting, (small, big) in results.items():
        for role in sorted(set(small) | set(big)):
            a, b = small.get(role), big.get(role)
            ratio = b / a if a and b else float("nan")
            worst = max(worst, ratio) if ratio == ratio else float("inf")
            fa = f"{a / MiB:.0f} MiB" if a else "n/a"
            fb = f"{b / MiB:.0f} MiB" if b else "n/a"
            lines.append(f"| {setting} | {role} | {fa} | {fb} | {ratio:.2f}x |")
    return "\n".join(lines), worst


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--rows", type=int, default=None, help="N (default 5,000; 150 with --quick)")
    p.add_argument("--rows-per-file", type=int, default=None)
    p.add_argument("--px", type=int, default=None, help="side of the noise PNGs")
    p.add_argument("--no-s3", action="store_true", help="skip the moto S3 runs (always skipped with --quick)")
    p.add_argument("--results", default=None)
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args()
    n = args.rows or (150 if args.quick else 5000)
    per_file = args.rows_per_file or (50 if args.quick else 500)
    px = args.px or (128 if args.quick else 64)
    info = common.machine_info()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(PYTHONUNBUFFERED="1", RAY_USAGE_STATS_ENABLED="0")
    results: dict[str, tuple[dict, dict]] = {}
    sizes = {}
    with tempfile.TemporaryDirectory(prefix="data_scaling_") as tmp:
        paths = {}
        for rows in (n, 10 * n):
            paths[rows] = os.path.join(tmp, f"pq_{rows}")
            sizes[rows] = write_parquet(paths[rows], rows, per_file, px)
        runs = [train_peaks(paths[rows], os.path.join(tmp, f"run_{rows}"), env) for rows in (n, 10 * n)]
        results["local Parquet, train"] = (runs[0][0], runs[1][0])
        if not (args.quick or args.no_s3):
            results["S3 (moto) Parquet, train"] = s3_peaks(paths, n, tmp, env)
        conv = []
        for files in (n, 10 * n):
            src = os.path.join(tmp, f"folder_{files}")
            write_folder(src, files, px)
            peaks, _ = metered([sys.executable, "-m", "simmim_ray", "convert", src, os.path.join(tmp, f"conv_{files}"),
                                "--from", "imagefolder", "--rows-per-shard", str(per_file)], env, timeout=1800)
            conv.append({"convert process": peaks["driver"]})
        results["simmim-ray convert"] = (conv[0], conv[1])
    body, worst = table(results, n)
    verdict = "met" if worst <= GOAL else "NOT met"
    text = (f"Parquet of {n:,} and {10 * n:,} rows ({px} px noise PNGs, {per_file} rows per file and row group: "
            f"{sizes[n] / MiB:.0f} MiB and {sizes[10 * n] / MiB:.0f} MiB); one epoch of `simmim-ray train`, 2 "
            f"workers, every split streamed (pre-training pool, k-NN bank, validation, test). Peak RssAnon per "
            f"role, sampled every 0.2 s.\n\n{body}\n\nLargest growth from N to 10N: {worst:.2f}x "
            f"(goal <= {GOAL:.2f}x: {verdict}). Train wall time: {runs[0][1]:.0f} s and {runs[1][1]:.0f} s "
            f"(shared machine: timings are noisy).")
    common.publish("data_scaling", text, args, info=info)


def s3_peaks(paths: dict, n: int, tmp: str, env: dict) -> tuple[dict, dict]:
    """The same two runs reading from moto's S3 server (in this process; its memory is not any role's)."""
    import pyarrow.fs as pafs

    from benchmarks.s3_server import moto_s3  # moto: the `test` extra, needed only for these rows

    out = []
    with moto_s3() as s3:
        for k, v in s3.env.items():
            os.environ[k] = v
        for rows in (n, 10 * n):
            uri = s3.uri(f"pq_{rows}")
            fs, base = pafs.FileSystem.from_uri(uri)
            pafs.copy_files(paths[rows], base, destination_filesystem=fs)
            out.append(train_peaks(uri, os.path.join(tmp, f"s3run_{rows}"), {**env, **s3.env})[0])
    return out[0], out[1]


if __name__ == "__main__":
    main()
