"""The read models (failure causes and slices, entity counters, run counts and step bounds)
against a recount in SQL of the tables they summarise, on a built database: the
same definitions as the recounts of tests/test_read_model_*.py, run by
PostgreSQL itself (10,000,000 steps do not fit a Python recount), each timed.

    .venv/bin/python scripts/with_postgres.py --keep /tmp/tracer-bench-data/pg-10m \\
        .venv/bin/python bench/recount_read_models.py

Each check counts the rows of the recount missing from the read model and the rows
of the read model missing from the recount (`EXCEPT` both ways, every column
compared): both 0 when the read model is exact. PostgreSQL only.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _setup  # noqa: F401  (Django, migrated)
from _measure import machine_lines, table
from django.db import connection

from traces.ingest import step_groups, type_trends

STEP_TIME = "COALESCE(s.started_at, r.started_at)"
LINK_TIME = "COALESCE(l.created_at, s.started_at, r.started_at)"
KNOWN = "('input', 'output', 'affected')"

# The failed steps (not synthetic) by cause, UTC day of their time, run format and
# run type; no time: the day 0001-01-01 (traces.causes.NO_DAY).
CAUSES_RECOUNT = f"""
SELECT s.error_cause, COALESCE(({STEP_TIME} AT TIME ZONE 'UTC')::date, DATE '0001-01-01'),
       r.format, r.type, COUNT(*), MIN({STEP_TIME}), MAX({STEP_TIME})
FROM traces_step s JOIN traces_run r ON r.id = s.run_id
WHERE s.status = 'failed' AND NOT s.synthetic
GROUP BY 1, 2, 3, 4
"""
CAUSES_STORED = """
SELECT cause, day, format, run_type, count, first_seen, last_seen FROM traces_failurecause
"""
# The same by 10-minute UTC slot and step name (its first 100 characters); no time:
# 0001-01-01 00:00 UTC (traces.causes.NO_SLOT). Whole seconds divided, as
# failure_counts.slot_sql does (exact to 9999-12-31 23:59:59.999999).
SLICES_RECOUNT = f"""
SELECT s.error_cause,
       COALESCE(to_timestamp(floor(floor(extract(epoch FROM {STEP_TIME})) / 600) * 600),
                TIMESTAMPTZ '0001-01-01 00:00:00+00'),
       r.format, r.type, substr(s.name, 1, 100), COUNT(*), MIN({STEP_TIME}), MAX({STEP_TIME})
FROM traces_step s JOIN traces_run r ON r.id = s.run_id
WHERE s.status = 'failed' AND NOT s.synthetic
GROUP BY 1, 2, 3, 4, 5
"""
SLICES_STORED = """
SELECT cause, slot, format, run_type, step_name, count, first_seen, last_seen
FROM traces_failureslice
"""


def _by_link_type() -> str:
    kinds = {
        "read": "l.link_type = 'input'",
        "written": "l.link_type = 'output'",
        "affected": "l.link_type = 'affected'",
        "other": f"l.link_type NOT IN {KNOWN}",
    }
    links = [f"COUNT(*) FILTER (WHERE {where}) AS links_{verb}" for verb, where in kinds.items()]
    steps = [
        f"COUNT(DISTINCT l.step_id) FILTER (WHERE {where}) AS steps_{verb}"
        for verb, where in kinds.items()
    ]
    return ", ".join(links + steps)


FIGURES = (
    "links_read", "links_written", "links_affected", "links_other",
    "steps_read", "steps_written", "steps_affected", "steps_other",
)  # fmt: skip

# Each entity's links (by type, distinct steps by type, first/last time, an external
# id), the steps it is the subject of, and the distinct runs of both.
ENTITIES_RECOUNT = f"""
WITH links AS (
  SELECT l.entity_type, l.entity_id, COUNT(*) AS links, {_by_link_type()},
         MIN({LINK_TIME}) AS first, MAX({LINK_TIME}) AS last, MAX(l.external_id) AS external
  FROM traces_entitylink l LEFT JOIN traces_step s ON s.id = l.step_id
  LEFT JOIN traces_run r ON r.id = l.run_id
  GROUP BY 1, 2
), subjects AS (
  SELECT s.entity_type, s.entity_id, COUNT(*) AS subjects,
         MIN({STEP_TIME}) AS first, MAX({STEP_TIME}) AS last
  FROM traces_step s JOIN traces_run r ON r.id = s.run_id
  WHERE s.entity_type > ''
  GROUP BY 1, 2
), runs AS (
  SELECT entity_type, entity_id, COUNT(*) AS runs FROM (
    SELECT entity_type, entity_id, run_id FROM traces_entitylink
    UNION SELECT entity_type, entity_id, run_id FROM traces_step WHERE entity_type > ''
  ) AS pairs GROUP BY 1, 2
)
SELECT COALESCE(l.entity_type, j.entity_type), COALESCE(l.entity_id, j.entity_id),
       COALESCE(l.links, 0), {", ".join(f"COALESCE(l.{name}, 0)" for name in FIGURES)},
       COALESCE(j.subjects, 0), n.runs, LEAST(l.first, j.first), GREATEST(l.last, j.last),
       COALESCE(l.external, '')
FROM links l FULL JOIN subjects j
  ON j.entity_type = l.entity_type AND j.entity_id = l.entity_id
JOIN runs n ON n.entity_type = COALESCE(l.entity_type, j.entity_type)
  AND n.entity_id = COALESCE(l.entity_id, j.entity_id)
"""
ENTITIES_STORED = f"""
SELECT entity_type, entity_id, links, {", ".join(FIGURES)}, subjects, runs, first_seen,
       last_seen, external_id
FROM traces_entitycounter
"""
TYPES_RECOUNT = """
SELECT entity_type, SUM(links), SUM(subjects) FROM (
  SELECT entity_type, COUNT(*) AS links, 0 AS subjects FROM traces_entitylink GROUP BY 1
  UNION ALL SELECT entity_type, 0, COUNT(*) FROM traces_step WHERE entity_type > '' GROUP BY 1
) AS counted GROUP BY 1
"""
TYPES_STORED = "SELECT entity_type, links, subjects FROM traces_entitytypecounter"

RUNS_RECOUNT = "SELECT format, type, status, COUNT(*) FROM traces_run GROUP BY 1, 2, 3"
RUNS_STORED = "SELECT format, run_type, status, count FROM traces_runcount"
BOUNDS_RECOUNT = """
SELECT r.id, b.first, b.last FROM traces_run r LEFT JOIN (
  SELECT run_id, MIN(started_at) AS first, MAX(finished_at) AS last
  FROM traces_step GROUP BY run_id
) AS b ON b.run_id = r.id
"""
BOUNDS_STORED = "SELECT id, steps_started_at, steps_finished_at FROM traces_run"

# The trends: runs by (type, UTC hour of the start, format, status, duration bin), the
# bin as type_trends.duration_bin computes it; steps by (type, UTC day of the run's
# start, format, name), their durations as TypeStep sums them.
_HOUR = "COALESCE(date_trunc('hour', r.started_at AT TIME ZONE 'UTC'), TIMESTAMP '0001-01-01')"
_BIN = (
    f"CASE WHEN r.duration_ms IS NULL OR r.status = 'running' OR r.duration_ms = 'NaN' "
    f"THEN {type_trends.NO_DURATION} ELSE CEIL(LOG(2.0, LEAST(GREATEST(r.duration_ms, "
    f"{type_trends.MIN_MS!r}), {type_trends.MAX_MS!r})::numeric) "
    f"* {type_trends.BINS_PER_DOUBLING} - 1e-9)::int END"
)
BUCKETS_RECOUNT = f"""
SELECT r.type, {_HOUR}, r.format, r.status, {_BIN}, COUNT(*) FROM traces_run r
GROUP BY 1, 2, 3, 4, 5
"""
BUCKETS_STORED = """
SELECT run_type, hour AT TIME ZONE 'UTC', format, status, bin, count FROM traces_typebucket
"""
TYPE_STEPS_RECOUNT = f"""
SELECT r.type, COALESCE((r.started_at AT TIME ZONE 'UTC')::date, DATE '0001-01-01'), r.format,
       substr(s.name, 1, {type_trends.STEP_NAME_MAX}), COUNT(*),
       COUNT(*) FILTER (WHERE s.status = 'failed'), COUNT(s.duration_ms),
       SUM({type_trends._step_us_sql()})
FROM traces_step s JOIN traces_run r ON r.id = s.run_id
WHERE NOT s.synthetic GROUP BY 1, 2, 3, 4
"""
TYPE_STEPS_STORED = (
    "SELECT run_type, day, format, name, steps, failed, timed, total_us FROM traces_typestep"
)
ITEMS_RECOUNT = """
SELECT r.id, COALESCE(SUM(s.items_failed) FILTER (WHERE NOT s.synthetic), 0)
FROM traces_run r LEFT JOIN traces_step s ON s.run_id = r.id GROUP BY r.id
"""
ITEMS_STORED = "SELECT id, steps_items_failed FROM traces_run"
# Repeated steps: the children of one name under one parent (at least MIN_GROUP), with
# their failures, failed items, timed ones and nearest-rank p50/p95 and max of their
# durations (negative ones as 0; GREATEST alone would make a missing one 0); and the
# runs with more than COUNT_ROOTS_ABOVE roots.
_DURATION = "CASE WHEN s.duration_ms IS NOT NULL THEN GREATEST(s.duration_ms, 0.0) END"
NAME_GROUPS_RECOUNT = f"""
SELECT s.run_id, s.parent_id, 'name', s.name, COUNT(*),
       COUNT(*) FILTER (WHERE s.status = 'failed' OR COALESCE(s.items_failed, 0) > 0),
       SUM(GREATEST(COALESCE(s.items_failed, 0), 0)), COUNT(s.duration_ms),
       percentile_disc(0.5) WITHIN GROUP (ORDER BY {_DURATION}),
       percentile_disc(0.95) WITHIN GROUP (ORDER BY {_DURATION}), MAX({_DURATION})
FROM traces_step s WHERE NOT s.synthetic
GROUP BY s.run_id, s.parent_id, s.name HAVING COUNT(*) >= {step_groups.MIN_GROUP}
UNION ALL
SELECT run_id, NULL, 'root', '', COUNT(*), 0, 0, 0, NULL, NULL, NULL
FROM traces_step WHERE parent_id IS NULL
GROUP BY run_id HAVING COUNT(*) > {step_groups.COUNT_ROOTS_ABOVE}
"""
NAME_GROUPS_STORED = """
SELECT run_id, parent_id, kind, name, count, failed, items_failed, timed, p50_ms, p95_ms, max_ms
FROM traces_stepgroup WHERE kind IN ('name', 'root')
"""

# The stored times the lists order by, and each failed step's cause column.
SINGLE = {
    "link times (EntityLink.seen_at)": f"""
        SELECT COUNT(*) FROM traces_entitylink l LEFT JOIN traces_step s ON s.id = l.step_id
        LEFT JOIN traces_run r ON r.id = l.run_id
        WHERE l.seen_at IS DISTINCT FROM {LINK_TIME}""",
    "subject times (Step.entity_seen_at)": f"""
        SELECT COUNT(*) FROM traces_step s JOIN traces_run r ON r.id = s.run_id
        WHERE s.entity_seen_at IS DISTINCT FROM
              CASE WHEN s.entity_type > '' THEN {STEP_TIME} END""",
    "failure times (Step.failed_at)": f"""
        SELECT COUNT(*) FROM traces_step s JOIN traces_run r ON r.id = s.run_id
        WHERE s.failed_at IS DISTINCT FROM
              CASE WHEN s.status = 'failed' THEN {STEP_TIME} END""",
    "failure time estimates (Step.failed_at_estimated)": """
        SELECT COUNT(*) FROM traces_step s JOIN traces_run r ON r.id = s.run_id
        WHERE s.failed_at_estimated IS DISTINCT FROM
              CASE WHEN s.status = 'failed' THEN r.times_estimated END""",
    "a cause on a step that did not fail": """
        SELECT COUNT(*) FROM traces_step WHERE status <> 'failed' AND error_cause <> ''""",
}

CHECKS = [
    ("failure causes (FailureCause)", CAUSES_RECOUNT, CAUSES_STORED),
    ("failure slices (FailureSlice)", SLICES_RECOUNT, SLICES_STORED),
    ("entity counters (EntityCounter)", ENTITIES_RECOUNT, ENTITIES_STORED),
    ("entity types (EntityTypeCounter)", TYPES_RECOUNT, TYPES_STORED),
    ("run counts (RunCount)", RUNS_RECOUNT, RUNS_STORED),
    ("run step bounds (Run.steps_started_at/finished_at)", BOUNDS_RECOUNT, BOUNDS_STORED),
    ("failed items of runs (Run.steps_items_failed)", ITEMS_RECOUNT, ITEMS_STORED),
    ("run trends (TypeBucket)", BUCKETS_RECOUNT, BUCKETS_STORED),
    ("step trends (TypeStep)", TYPE_STEPS_RECOUNT, TYPE_STEPS_STORED),
    (
        "repeated steps and root counts (StepGroup, kinds name and root)",
        NAME_GROUPS_RECOUNT,
        NAME_GROUPS_STORED,
    ),
]


def compare(recount: str, stored: str) -> tuple[int, int, int, float]:
    """(rows in the read model, recount rows it lacks, its rows the recount lacks,
    seconds): the recount is computed once, then compared both ways."""
    start = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH recount AS MATERIALIZED ({recount}), stored AS MATERIALIZED ({stored}) "
            "SELECT (SELECT COUNT(*) FROM stored), "
            "(SELECT COUNT(*) FROM (SELECT * FROM recount EXCEPT ALL SELECT * FROM stored) a), "
            "(SELECT COUNT(*) FROM (SELECT * FROM stored EXCEPT ALL SELECT * FROM recount) b)"
        )
        rows, missing, extra = cursor.fetchone()
    return rows, missing, extra, time.perf_counter() - start


def failed_causes_of_their_errors() -> tuple[int, int, float]:
    """(failed steps, those whose stored cause is not error_cause(error), seconds):
    the normalisation is Python's, so the failed steps' errors are streamed to it."""
    from traces.causes import error_cause

    start = time.perf_counter()
    checked = wrong = 0
    with connection.cursor() as cursor:
        cursor.execute("SELECT error, error_cause FROM traces_step WHERE status = 'failed'")
        while batch := cursor.fetchmany(10_000):
            for error, cause in batch:
                checked += 1
                wrong += cause != error_cause(error)
    return checked, wrong, time.perf_counter() - start


def main() -> None:
    if connection.vendor != "postgresql":
        sys.exit("PostgreSQL only: run it under scripts/with_postgres.py")
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM traces_step")
        steps = cursor.fetchone()[0]
    print(f"\n## Read models against a SQL recount at {steps:,} steps\n")
    print("\n".join(machine_lines(connection.vendor)))
    print()
    rows, exact = [], True
    for label, recount, stored in CHECKS:
        stored_rows, missing, extra, seconds = compare(recount, stored)
        exact &= missing == extra == 0
        rows.append([label, f"{stored_rows:,}", f"{missing:,}", f"{extra:,}", f"{seconds:.1f} s"])
        print(f"{label}: {rows[-1][1:]}", file=sys.stderr, flush=True)
    for label, sql in SINGLE.items():
        start = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute(sql)
            wrong = cursor.fetchone()[0]
        exact &= wrong == 0
        rows.append([label, "—", f"{wrong:,}", "—", f"{time.perf_counter() - start:.1f} s"])
    checked, wrong, seconds = failed_causes_of_their_errors()
    exact &= wrong == 0
    rows.append([f"failed steps' causes = error_cause(error) ({checked:,} steps)", "—",
                 f"{wrong:,}", "—", f"{seconds:.1f} s"])  # fmt: skip
    headers = ["read model", "its rows", "recount rows it lacks / wrong", "its rows not in the "
               "recount", "recount time"]  # fmt: skip
    print(table(headers, rows, "lrrrr"))
    print(f"\n{'every read model equals its recount' if exact else 'MISMATCH'}")
    sys.exit(0 if exact else 1)


if __name__ == "__main__":
    main()
