"""The benchmark data sets, generated once and kept (no Django here).

Each data set lives in `$TRACER_BENCH_DATA` (default /tmp/tracer-bench-data) under
a name that includes its parameters, with a `.done` marker holding what was made;
a later run reuses it. `--quick` sizes are a tenth (or less) of the full ones.

    python bench/_data.py [--quick]     # generate every data set now
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from generate import (
    error_message,
    write_duckflux_dir,
    write_duckflux_json,
    write_greentic_dir,
    write_traceos_jsonl,
    write_workflow_dbs,
)
from generate_runs_db import Options, generate_runs_db

DATA_ROOT = Path(os.environ.get("TRACER_BENCH_DATA", "/tmp/tracer-bench-data"))

# name: (full parameters, quick parameters)
SPECS: dict[str, tuple[dict, dict]] = {
    # Ingest per format (bench_ingest.py); the file formats also go into the pages mix.
    "duckflux-files": ({"files": 10_000, "steps": 10}, {"files": 1_000, "steps": 10}),
    "duckflux-big": ({"steps": 50_000, "payload": 10_100}, {"steps": 5_000, "payload": 10_000}),
    # Just under the parser's 64 MiB streaming threshold: read in memory (bench_memory.py).
    "duckflux-under-threshold": (
        {"steps": 6_600, "payload": 10_100},
        {"steps": 6_600, "payload": 10_100},
    ),
    "greentic": ({"files": 5_000}, {"files": 500}),
    "traceos": ({"traces": 20_000, "steps": 10}, {"traces": 2_000, "steps": 10}),
    "workflow": ({"executions": 10_000, "steps": 10}, {"executions": 1_000, "steps": 10}),
    "runs": (
        {"runs": 500, "steps": 50_000, "calls": 100_000},
        {"runs": 50, "steps": 5_000, "calls": 10_000},
    ),
    # The 1,000,000-step mix of bench_pages.py: these two plus the four file/db sets above.
    "pages-runs": (
        {"runs": 2_000, "steps": 460_000, "calls": 460_000, "links": 230_000},
        {"runs": 200, "steps": 46_000, "calls": 46_000, "links": 23_000},
    ),
    "pages-bigrun": (
        {"runs": 1, "steps": 100_000, "calls": 100_000, "links": 50_000},
        {"runs": 1, "steps": 10_000, "calls": 10_000, "links": 5_000},
    ),
}

PAGES_MIX = ("pages-runs", "pages-bigrun", "workflow", "traceos", "duckflux-files", "greentic")


def params(name: str, quick: bool) -> dict:
    full, small = SPECS[name]
    return small if quick else full


# Seeds of the data sets; shard k of a scaled mix adds SHARD_SEED * k.
SEEDS = {
    "duckflux-files": 0,
    "greentic": 2,
    "traceos": 3,
    "workflow": 4,
    "runs": 0,
    "pages-runs": 5,
    "pages-bigrun": 6,
}
SHARD_SEED = 1_000


def dataset(name: str, quick: bool = False, *, log=print, shard: int = 0) -> tuple[Path, dict]:
    """(path to ingest, what it holds), generating it on first use. Shard k > 0 is
    the same data set made again from another seed (other ids, errors, entities):
    the pages mix at ten times its size is shards 0-9 of each (`pages_mix_paths`)."""
    spec = params(name, quick)
    key = [name, spec] if not shard else [name, spec, shard]
    tag = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:8]
    home = DATA_ROOT / (f"{name}-{tag}" if not shard else f"{name}-s{shard}-{tag}")
    marker = home / ".done"
    if marker.exists():
        made = json.loads(marker.read_text())
        return Path(made["path"]), made
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    log(f"generating {name} {spec} in {home} ...")
    began = time.perf_counter()
    made = _generate(name, home, spec, SEEDS.get(name, 0) + SHARD_SEED * shard)
    made["seconds"] = round(time.perf_counter() - began, 1)
    made["spec"] = spec
    log(f"  {made}")
    marker.write_text(json.dumps(made))
    return Path(made["path"]), made


def _generate(name: str, home: Path, spec: dict, seed: int) -> dict:
    if name == "duckflux-files":
        return write_duckflux_dir(
            home / "traces", files=spec["files"], steps=spec["steps"], seed=seed
        )
    if name in ("duckflux-big", "duckflux-under-threshold"):
        return write_duckflux_json(
            home / "big.json", steps=spec["steps"], payload_bytes=spec["payload"], seed=1
        )
    if name == "greentic":
        return write_greentic_dir(home / "traces", files=spec["files"], seed=seed)
    if name == "traceos":
        return write_traceos_jsonl(
            home / "traces.jsonl", traces=spec["traces"], steps=spec["steps"], seed=seed
        )
    if name == "workflow":
        return write_workflow_dbs(
            home / "wf", executions=spec["executions"], steps=spec["steps"], seed=seed
        )
    if name in ("runs", "pages-runs", "pages-bigrun"):
        path = home / "runs.sqlite"
        options = None
        if name != "runs":
            options = Options(step_failure_rate=0.03, error=error_message, entity_pool=100_000)
        counts = generate_runs_db(
            path,
            runs=spec["runs"],
            steps=spec["steps"],
            calls=spec["calls"],
            links=spec.get("links"),
            seed=seed,
            options=options,
            # The big run is the newest, so it is on the first page of the runs list.
            start_ms=1_790_000_000_000 if name == "pages-bigrun" else None,
        )
        return {"path": str(path), **counts}
    raise KeyError(name)


def pages_mix_paths(
    quick: bool, scale: int = 1, *, log=print, only: str | None = None
) -> dict[str, list[Path]]:
    """The paths of the pages mix at `scale` times its size (or of its data set
    `only`): each data set's shards 0 .. scale - 1 (shard 0 is the 1x data set)."""
    return {
        name: [dataset(name, quick, log=log, shard=k)[0] for k in range(scale)]
        for name in PAGES_MIX
        if only in (None, name)
    }


def pages_environment(quick: bool, scale: int = 1) -> Path | None:
    """Environment for settings, before Django loads them: production settings and,
    on SQLite, the kept database file."""
    os.environ.setdefault("TRACER_DEBUG", "0")
    os.environ.setdefault("TRACER_SECRET_KEY", "bench-only-not-secret")
    os.environ.setdefault("TRACER_SSL_REDIRECT", "0")
    os.environ.setdefault("TRACER_SECURE_COOKIES", "0")
    os.environ.setdefault("TRACER_HSTS_SECONDS", "0")
    os.environ.setdefault("TRACER_ALLOWED_HOSTS", "testserver,localhost")
    os.environ.setdefault("TRACER_INGEST_IN_BACKGROUND", "0")
    if os.environ.get("DATABASE_URL", "").startswith("postgres"):
        return None
    home = DATA_ROOT / f"pages-db-{'quick' if quick else 'full'}{f'-x{scale}' if scale > 1 else ''}"
    home.mkdir(parents=True, exist_ok=True)
    os.environ["DATABASE_URL"] = f"sqlite:///{home / 'tracer.sqlite3'}"
    return home


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    for key in SPECS:
        dataset(key, quick)
