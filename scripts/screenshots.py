"""Screenshots of what a user looks at after a search, for docs/results.md: TensorBoard's Images and HParams views
and optuna-dashboard's study page, each in a real headless Chromium.

    python scripts/screenshots.py --out docs/img                      # a tiny search (about 5 trials), then shots
    python scripts/screenshots.py --out docs/img --experiment DIR     # shots of an experiment that exists

Needs Chromium (`apt-get install chromium`, or CHROMIUM=/path) and optuna-dashboard (the test extra installs it);
the tiny search runs on this machine's Ray, on digits (no download). Servers listen on 127.0.0.1 only and are
stopped before the script ends.
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

# a small space and first points: a larger model that meets the target, smaller ones that may not, and a short
# grace period so the scheduler stops some; train.log_images on, for the Images view
SPACE = """params:
  model.embed_dim: {int: [16, 64], step: 16}
  model.depth: {int: [1, 2]}
  mask.ratio: {uniform: [0.4, 0.8]}
fixed:
  model.img_size: 16
  model.patch_size: 4
  mask.patch_size: 4
  model.num_heads: 2
"""
POINTS = """- {model.embed_dim: 64, model.depth: 2, mask.ratio: 0.6}
- {model.embed_dim: 32, model.depth: 1, mask.ratio: 0.6}
- {model.embed_dim: 16, model.depth: 1, mask.ratio: 0.75}
"""
SEARCH_FLAGS = ["--trials", "5", "--target-accuracy", "0.5", "--grace-period", "1", "--confirm", "0",
                "--workers-per-trial", "1", "--max-concurrent", "1",
                "--set", "train.epochs=3", "--set", "eval.epochs=20", "--set", "train.log_images=true"]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]
# (file, server, page, window size, milliseconds of page time to let it draw)
SHOTS = [
    ("tensorboard_images.png", "tensorboard", "/?darkMode=false#images", "1400,1000", 20000),
    ("tensorboard_hparams.png", "tensorboard", "/?darkMode=false#hparams", "1600,900", 20000),
    ("optuna_dashboard.png", "dashboard", "/dashboard/studies/1", "1600,2000", 20000),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="folder for the PNG files")
    ap.add_argument("--experiment", help="an existing experiment directory (default: run a tiny search first)")
    args = ap.parse_args()
    chromium = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        print("screenshots: no Chromium found (apt-get install chromium, or set CHROMIUM=/path)", file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="simmim_shots_") as tmp:
        exp = args.experiment or tiny_search(tmp)
        servers = {"tensorboard": serve([sys.executable, "-m", "tensorboard.main", "--logdir", os.path.join(exp, "tb"),
                                         "--host", "127.0.0.1", "--port", "{port}"]),
                   "dashboard": serve([dashboard_command(),
                                       f"sqlite:///{os.path.join(exp, 'study.db')}", "--host", "127.0.0.1",
                                       "--port", "{port}"])}
        try:
            for name, server, page, size, wait_ms in SHOTS:
                proc, port = servers[server]
                out = os.path.abspath(os.path.join(args.out, name))
                subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp}/chromium",
                                f"--window-size={size}", f"--virtual-time-budget={wait_ms}", f"--screenshot={out}",
                                f"http://127.0.0.1:{port}{page}"], check=True, capture_output=True, timeout=180)
                print(f"screenshots: {out}")
        finally:
            for proc, _ in servers.values():
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:  # a server busy reading its logs may not stop at once
                    proc.kill()
                    proc.wait()
    return 0


def dashboard_command() -> str:
    """optuna-dashboard's command, beside this Python's (a venv's bin/) or on PATH."""
    here = os.path.join(os.path.dirname(sys.executable), "optuna-dashboard")
    found = here if os.path.exists(here) else shutil.which("optuna-dashboard")
    if not found:
        raise SystemExit("screenshots: no optuna-dashboard command (pip install optuna-dashboard)")
    return found


def tiny_search(tmp: str) -> str:
    """Runs the tiny search with the real CLI; -> its experiment directory."""
    space, points = os.path.join(tmp, "shots.yaml"), os.path.join(tmp, "points.yaml")
    with open(space, "w") as f:
        f.write(SPACE)
    with open(points, "w") as f:
        f.write(POINTS)
    cmd = [sys.executable, "-m", "simmim_ray", "search", space, "--points", points, "--storage-path", tmp,
           *SEARCH_FLAGS]
    print("screenshots:", " ".join(cmd), flush=True)
    r = subprocess.run(cmd)
    if r.returncode not in (0, 3):  # 3: no answer, which the views show as well
        raise SystemExit(f"screenshots: the search failed (exit {r.returncode})")
    return os.path.join(tmp, "shots")


def serve(cmd: list[str]) -> tuple[subprocess.Popen, int]:
    """Starts a server on a free loopback port and waits until it answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([c.replace("{port}", str(port)) for c in cmd], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    for _ in range(120):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
            return proc, port
        except OSError:
            if proc.poll() is not None:
                raise SystemExit(f"screenshots: {' '.join(cmd[:3])} exited ({proc.returncode})")
            time.sleep(1)
    proc.terminate()
    raise SystemExit(f"screenshots: {' '.join(cmd[:3])} did not answer on port {port}")


if __name__ == "__main__":
    sys.exit(main())
