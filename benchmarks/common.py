"""What every benchmark here shares: timing cnnlite and PyTorch side by side, and the results file.

Timing rules: both frameworks run in the same process, on the same inputs, interleaved (one
cnnlite run, one PyTorch run, and again), after warm-up runs (numba compiles on the first call),
and each is summarised by its median, which a few slow outliers do not move.
"""
from __future__ import annotations

import datetime
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np


def machine() -> str:
    """One line naming the CPU, its core count and the library versions."""
    import numba
    import torch
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        layer = f"numba threading layer {numba.threading_layer()}"
    except ValueError:  # no parallel numba loop has run yet
        layer = "numba threading layer not chosen yet"
    return (f"{model}, {os.cpu_count()} cores; numpy {np.__version__}, numba {numba.__version__} "
            f"({layer}), torch {torch.__version__} ({torch.get_num_threads()} threads)")


def time_side_by_side(ours, theirs, repeats: int = 7, warmup: int = 2, pause: float = 0.0):
    """Median seconds of ``ours()`` and ``theirs()``, run alternately ``repeats`` times.

    ``pause`` seconds of sleep before each timed run let the other framework's worker threads
    go idle first: OpenBLAS's workers (numpy's GEMM, so cnnlite's) and PyTorch's OpenMP workers
    keep spinning for a while after each product, and on 2 cores a spinning thread takes a core
    from the next run. Without a pause, back-to-back runs slow each other down.
    """
    for _ in range(warmup):
        ours()
        theirs()
    ours_times, theirs_times = [], []
    for _ in range(repeats):
        for fn, times in ((ours, ours_times), (theirs, theirs_times)):
            time.sleep(pause)
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return statistics.median(ours_times), statistics.median(theirs_times)


def geometric_mean(values) -> float:
    return float(np.exp(np.mean(np.log(values))))


def write_results(path, title: str, header, rows, notes: str = "") -> str:
    """Write a markdown table with the date and the machine; return the text."""
    lines = [f"# {title}", "",
             f"Measured {datetime.date.today().isoformat()} on {machine()}.", "",
             "| " + " | ".join(header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    text = "\n".join(lines) + "\n" + (f"\n{notes.strip()}\n" if notes else "")
    Path(path).write_text(text)
    return text
