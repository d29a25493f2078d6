"""Screenshots of TensorBoard's tabs for a log dir, taken by headless Chromium.

    python scripts/screenshot_tensorboard.py logs/circle/multiruns/<sweep> --out /tmp/tb_shots
    python scripts/screenshot_tensorboard.py <dir> --tabs hparams custom_scalars --width 1400

Starts ``tensorboard --logdir <dir> --host 127.0.0.1`` from this venv on a free port, waits
until it serves the runs, has Chromium (``chromium --headless --screenshot``) draw each tab
into ``<out>/<tab>.png``, and stops TensorBoard by its process id. Chromium is not a Python
package: ``apt-get install -y chromium`` (Debian, Ubuntu) provides it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

# tab: the fragment of TensorBoard's address that opens it
TABS = {
    "timeseries": "timeseries",
    "custom_scalars": "custom_scalars",
    "hparams": "hparams",  # opens on its table view
    "images": "images",
}
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    raise SystemExit(f"no Chromium found ({', '.join(BROWSERS)}); install it: apt-get install -y chromium")


def wait_until_serving(url: str, process: subprocess.Popen[bytes], timeout: float) -> list[str]:
    """The runs TensorBoard lists, once it lists any (it reads the event files after starting)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"tensorboard exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/data/runs", timeout=5) as response:
                runs = json.loads(response.read())
            if runs:
                return [str(r) for r in runs]
        except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
            pass
        time.sleep(0.5)
    raise SystemExit(f"tensorboard at {url} listed no runs within {timeout:.0f} s")


def screenshot(chromium: str, url: str, path: Path, width: int, height: int, budget_ms: int) -> None:
    with tempfile.TemporaryDirectory(prefix="tb_chromium_") as profile:
        command = [
            chromium,
            "--headless",
            "--no-sandbox",  # root in a container
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            f"--virtual-time-budget={budget_ms}",
            f"--screenshot={path}",
            url,
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=budget_ms / 1000 + 120)
    if result.returncode != 0 or not path.is_file():
        raise SystemExit(f"chromium failed on {url} ({result.returncode}): {result.stderr[-2000:]}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("logdir", type=Path)
    parser.add_argument("--out", type=Path, default=Path("tb_shots"))
    parser.add_argument("--tabs", nargs="+", choices=list(TABS), default=list(TABS))
    parser.add_argument("--port", type=int, default=0, help="default: a free one")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=1000)
    parser.add_argument("--budget-ms", type=int, default=20000, help="Chromium's virtual time per page")
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait for TensorBoard")
    args = parser.parse_args(argv)
    if not args.logdir.is_dir():
        raise SystemExit(f"{args.logdir}: not a directory")
    chromium = browser()
    port = args.port or free_port()
    url = f"http://127.0.0.1:{port}"
    tensorboard = Path(sys.executable).parent / "tensorboard"
    command = [str(tensorboard), "--logdir", str(args.logdir), "--port", str(port), "--host", "127.0.0.1"]
    args.out.mkdir(parents=True, exist_ok=True)
    log_path = args.out / "tensorboard.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
        try:
            runs = wait_until_serving(url, process, args.timeout)
            print(f"tensorboard (pid {process.pid}) at {url}: {len(runs)} runs")
            for tab in args.tabs:
                path = args.out / f"{tab}.png"
                screenshot(chromium, f"{url}/#{TABS[tab]}", path, args.width, args.height, args.budget_ms)
                print(f"{tab}: {path}")
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


if __name__ == "__main__":
    main()
