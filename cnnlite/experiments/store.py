"""The results of sweeps in one SQLite file: runs, their status, and every epoch's numbers.

Tables::

    sweeps      name, source (the file's path), text (the sweep file itself), description
    runs        run_id (unique), config (JSON), status, attempts, top1, top5, seconds,
                error, worker, started, finished
    sweep_runs  which run belongs to which sweep, under which group and variant (a run shared
                by two sweeps, such as their common baseline, runs once)
    epochs      run_id, epoch, train_loss, train_acc, val_loss, val_acc, val_top5, lr, seconds

A run's status goes ``pending`` -> ``running`` -> ``done`` or ``failed``; each change is one
transaction, so a crash (of the process, or of the machine) loses at most the runs that were
in flight: they stay ``running`` and the next ``cnnlite sweep run`` repeats them, with every
run that is not ``done``. A finished run's numbers and epochs are written together, in one
transaction, and only once: the run id is the primary key and a second result for a ``done``
run is refused.

Only the process that runs the sweep opens the file (workers send their results back to it),
so SQLite's one-writer rule is never in the way.
"""
from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from cnnlite.train.history import History

__all__ = ["ResultStore", "STATUSES"]

STATUSES = ("pending", "running", "done", "failed")

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS sweeps (
    name TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    text TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    config TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN {STATUSES}),
    attempts INTEGER NOT NULL DEFAULT 0,
    top1 REAL, top5 REAL, seconds REAL,
    error TEXT, worker TEXT, started REAL, finished REAL
);
CREATE TABLE IF NOT EXISTS sweep_runs (
    sweep TEXT NOT NULL REFERENCES sweeps(name),
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    position INTEGER NOT NULL,
    grp TEXT NOT NULL,
    variant TEXT NOT NULL,
    changes TEXT NOT NULL,
    seed INTEGER NOT NULL,
    PRIMARY KEY (sweep, run_id)
);
CREATE TABLE IF NOT EXISTS epochs (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    {", ".join(f"{field} {'INTEGER' if field == 'epoch' else 'REAL'}" for field in History.FIELDS)},
    PRIMARY KEY (run_id, epoch)
);
"""


class ResultStore:
    """The SQLite file at ``path`` (created with its tables when missing).

    >>> store = ResultStore("results.sqlite")
    >>> store.add_sweep(load_sweep("activations.toml"))
    >>> [row["variant"] for row in store.runs("activations")]
    ['baseline', 'baseline', 'activation=tanh', ...]
    """

    def __init__(self, path):
        self.path = Path(path)
        self.connection = sqlite3.connect(self.path, timeout=30)
        self.connection.row_factory = sqlite3.Row
        self.connection.execute("PRAGMA foreign_keys = ON")
        with self.connection:
            self.connection.executescript(_SCHEMA)

    def close(self) -> None:
        self.connection.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def add_sweep(self, sweep) -> None:
        """Record the sweep and its runs (new runs as ``pending``; runs the file already
        holds keep their status and results)."""
        with self.connection:
            self.connection.execute(
                "INSERT INTO sweeps (name, source, text, description) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET source = excluded.source, "
                "text = excluded.text, description = excluded.description",
                (sweep.name, sweep.source, sweep.text, sweep.description))
            for position, run in enumerate(sweep.runs):
                self.connection.execute(
                    "INSERT OR IGNORE INTO runs (run_id, config) VALUES (?, ?)",
                    (run.run_id, json.dumps(run.config, sort_keys=True)))
                self.connection.execute(
                    "INSERT OR REPLACE INTO sweep_runs (sweep, run_id, position, grp, variant, "
                    "changes, seed) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (sweep.name, run.run_id, position, run.group, run.variant,
                     json.dumps(run.changes, sort_keys=True), run.seed))

    def unfinished(self, sweep: str) -> list:
        """``(run_id, config)`` of the sweep's runs that are not ``done``, in file order."""
        rows = self.connection.execute(
            "SELECT runs.run_id, runs.config FROM sweep_runs JOIN runs USING (run_id) "
            "WHERE sweep_runs.sweep = ? AND runs.status != 'done' ORDER BY position", (sweep,))
        return [(row["run_id"], json.loads(row["config"])) for row in rows]

    def mark_running(self, run_id: str, worker: str = "") -> None:
        with self.connection:
            self.connection.execute(
                "UPDATE runs SET status = 'running', attempts = attempts + 1, worker = ?, "
                "started = ?, error = NULL WHERE run_id = ? AND status != 'done'",
                (worker, time.time(), run_id))

    def record_done(self, run_id: str, top1: float, top5: float, seconds: float,
                    history: dict, worker: str = "") -> bool:
        """Store a finished run's accuracy, time and per-epoch history (``History.FIELDS``
        -> lists), all in one transaction. Returns False, writing nothing, when the run is
        already ``done``."""
        with self.connection:
            changed = self.connection.execute(
                "UPDATE runs SET status = 'done', top1 = ?, top5 = ?, seconds = ?, error = NULL, "
                "worker = ?, finished = ? WHERE run_id = ? AND status != 'done'",
                (top1, top5, seconds, worker, time.time(), run_id)).rowcount
            if not changed:
                return False
            self.connection.execute("DELETE FROM epochs WHERE run_id = ?", (run_id,))
            fields = History.FIELDS
            rows = [(run_id, *values) for values in zip(*(history[f] for f in fields))]
            self.connection.executemany(
                f"INSERT INTO epochs (run_id, {', '.join(fields)}) VALUES "
                f"({', '.join('?' * (len(fields) + 1))})", rows)
        return True

    def record_failed(self, run_id: str, error: str, worker: str = "") -> None:
        with self.connection:
            self.connection.execute(
                "UPDATE runs SET status = 'failed', error = ?, worker = ?, finished = ? "
                "WHERE run_id = ? AND status != 'done'", (error, worker, time.time(), run_id))

    def sweeps(self) -> list[str]:
        return [row["name"] for row in
                self.connection.execute("SELECT name FROM sweeps ORDER BY rowid")]

    def runs(self, sweep: str) -> list[dict]:
        """The sweep's runs in file order: run id, group, variant, changes, seed, config,
        status, attempts, top1, top5, seconds, error, worker."""
        rows = self.connection.execute(
            "SELECT sweep_runs.grp AS grp, sweep_runs.variant, sweep_runs.changes, "
            "sweep_runs.seed, runs.* FROM sweep_runs JOIN runs USING (run_id) "
            "WHERE sweep_runs.sweep = ? ORDER BY position", (sweep,))
        return [{**dict(row), "group": row["grp"], "changes": json.loads(row["changes"]),
                 "config": json.loads(row["config"])} for row in rows]

    def history(self, run_id: str) -> dict:
        """A run's epochs as ``History.FIELDS`` -> lists (empty lists before it is done)."""
        rows = self.connection.execute(
            f"SELECT {', '.join(History.FIELDS)} FROM epochs WHERE run_id = ? ORDER BY epoch",
            (run_id,)).fetchall()
        return {field: [row[field] for row in rows] for field in History.FIELDS}

    def status_counts(self, sweep: str) -> dict:
        rows = self.connection.execute(
            "SELECT runs.status, COUNT(*) AS n FROM sweep_runs JOIN runs USING (run_id) "
            "WHERE sweep_runs.sweep = ? GROUP BY runs.status", (sweep,))
        return {status: 0 for status in STATUSES} | {row["status"]: row["n"] for row in rows}
