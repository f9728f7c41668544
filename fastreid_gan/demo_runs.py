"""What the demos (``make demo``, ``make demo-fdgan``, ...) share: run a tool as a user would, show its
progress lines as the trainer logs them, read a run's final evaluation."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

__all__ = ["REPO", "progress_line", "run", "read_metrics"]

REPO = Path(__file__).resolve().parents[1]

# fastreid's CommonMetricPrinter line: " eta: 0:03:41  epoch/iter: 0/37  total_loss: 4.835  time: 0.69 ..."
PROGRESS = re.compile(r"eta: (?P<eta>\S+)\s+epoch/iter: (?P<epoch>\d+)/(?P<iter>\d+)\s+(?P<rest>.*)")
SCALAR = re.compile(r"(\S+): (-?[\d.]+(?:e[-+]?\d+)?)")


def progress_line(line: str, label: str, keys: Sequence[str]) -> Optional[str]:
    """A compact progress line for one of the trainer's metric lines (None for any other line)."""
    match = PROGRESS.search(line)
    if not match:
        return None
    scalars = dict(SCALAR.findall(match["rest"]))
    shown = "  ".join(f"{k} {scalars[k]}" for k in keys if k in scalars)
    return f"  [{label}] iter {int(match['iter']) + 1:>4}  epoch {match['epoch']}  ETA {match['eta']:>8}  {shown}"


def run(cmd: List[str], log: Path, label: str, keys: Sequence[str] = ()) -> None:
    """Run ``cmd`` in the repository, its output into ``log``; print its progress lines as they come; on failure
    exit with the log's last lines."""
    print(f"\n$ {' '.join(cmd)}\n  (log: {log})", flush=True)
    start = time.time()
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f, subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                                 text=True, bufsize=1) as proc:
        for line in proc.stdout:
            f.write(line)
            shown = progress_line(line, label, keys)
            if shown:
                print(f"{shown}  ({time.time() - start:.0f} s)", flush=True)
    if proc.returncode != 0:
        tail = log.read_text().splitlines()[-40:]
        sys.exit(f"Command failed ({proc.returncode}); last lines of {log}:\n" + "\n".join(tail))
    print(f"  done in {time.time() - start:.0f} s", flush=True)


def read_metrics(output_dir: Path, label: str) -> Dict:
    """A run's final evaluation (its only test set) from ``metrics.json``, printed in one line."""
    result = next(iter(json.loads((output_dir / "metrics.json").read_text()).values()))
    print(f"  {label}: Rank-1 {result['Rank-1']:.1f}  mAP {result['mAP']:.1f}", flush=True)
    return result
