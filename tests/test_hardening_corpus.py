"""The bad-input corpus of tests/corpus.py, each case ingested in one batch with
a known-good file.

For every case: no exception escapes `ingest_paths`; the good file is ingested
whole; the bad one either fails with a message naming it and a reason (not an
exception's class name or "internal error": those are parser bugs) or is
ingested with a self-consistent result; a failed file leaves no rows; nothing
hangs (each case runs under an alarm). A run of the whole corpus (under xdist
too) sums the results up per family in its section of var/RELIABILITY-<vendor>.md
(docs/RELIABILITY.md with `make reliability`), and leaves every case's result
and time in var/corpus-results-<vendor>.json.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import math
import os
import re
import resource
import shutil
import signal
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.db.models import F

from tests.conftest import reliability_target
from tests.corpus import ERROR, PARTIAL, Case, build_corpus, huge_string_case
from traces.ingest import FORMATS, archives
from traces.ingest.loader import ingest_paths
from traces.ingest.report import IngestReport
from traces.models import Call, EntityLink, LogEntry, Run, Step, TraceFile

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
REPO = SAMPLES.parent
GOOD = SAMPLES / "greentic" / "01-success-always" / "trace.json"
# For cases made from greentic files: the good file must not share a run id with the case.
GOOD_ALT = SAMPLES / "duckflux" / "json" / "42462fed-a9ef-4b4a-89d5-3755b1f42178.json"
# Generous: a case that needs this long on a loaded CI machine is still no hang.
CASE_SECONDS = 90
HUGE_SECONDS = 120
# Peak memory the 100 MB string may cost, in multiples of its size. Measured on
# SQLite: duckflux 5.6, greentic 4.6, traceos 7.6. Of that, the parser holds 3-4
# copies at its peak (the file's bytes, orjson's buffer, the str); storing a str
# costs its UTF-8 form, SQLite's bound copy and the record it builds; and the
# test database lives in memory. A regression to reading in many copies, or
# quadratically, passes 10 at once.
HUGE_MEMORY_FACTOR = 10

_CORPUS_DIR = Path(tempfile.mkdtemp(prefix="tracer-corpus-"))
atexit.register(shutil.rmtree, _CORPUS_DIR, True)
CASES = build_corpus(SAMPLES, _CORPUS_DIR)
HUGE_FORMATS = ("duckflux", "greentic", "traceos")

# A reason that is an exception's text rather than an explanation: a parser bug.
_INTERNAL = re.compile(
    r"internal error|Traceback|^\s*[A-Z]\w*(Error|Exception|Warning)\b|object has no attribute"
    r"|is not subscriptable|is not iterable|unsupported operand|not supported between"
    r"|unhashable type|index out of range|NoneType|positional argument|codec can't"
)


class CaseTimeout(BaseException):
    """Not an Exception: the loader's `except Exception` must not catch it."""


@contextlib.contextmanager
def deadline(seconds: float):
    """Raise CaseTimeout in the main thread if the block runs longer than `seconds`."""

    def expire(signum, frame):
        raise CaseTimeout(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# --- what a batch must look like --------------------------------------------------------------


@dataclass
class Verdict:
    category: str = ""  # error | partial | crashed
    problems: list[str] = field(default_factory=list)
    crashed: bool = False
    lost: int = 0  # good runs missing, runs written twice
    outcomes: list[str] = field(default_factory=list)

    def fail(self, message: str, *, crash: bool = False, lost: bool = False) -> None:
        self.problems.append(message)
        self.crashed = self.crashed or crash
        self.lost += int(lost)


def expected_good(good: Path) -> tuple[int, int]:
    """(runs, steps) the good file gives, straight from its parser."""
    module = next(m for m in FORMATS.values() if m.sniff(good, good.read_bytes()[:65536]))
    runs = steps = 0
    for record in module.parse(good):
        runs += 1
        steps += sum(1 for step in record.steps if not step.synthetic)
    return runs, steps


_GOOD_COUNTS: dict[Path, tuple[int, int]] = {}


def good_file_for(case: Case) -> Path:
    return GOOD_ALT if case.source_format == "greentic" else GOOD


def judge(case: Case, report: IngestReport, good: Path) -> Verdict:
    verdict = Verdict()
    good_path = str(good.resolve())
    mine = [r for r in report.files if r.path == good_path]
    bad = [r for r in report.files if r.path != good_path]
    verdict.outcomes = [f"{r.outcome}: {r.error}" if r.error else r.outcome for r in bad]
    _judge_good(verdict, mine, good)
    if not bad:
        verdict.fail("the bad input produced no result at all (nothing says what happened to it)")
    for result in bad:
        if result.outcome == "failed":
            _judge_message(verdict, case, result.display_name, result.error)
            trace_file = TraceFile.objects.filter(pk=result.file_id).first()
            if trace_file is None or trace_file.status != TraceFile.FileStatus.ERROR:
                verdict.fail(f"{result.display_name}: failed but its file is not recorded as such")
            elif Run.objects.filter(source_file=trace_file).exists():
                verdict.fail(f"{result.display_name}: failed but left runs behind")
        elif result.outcome == "skipped":
            if Path(result.path) == case.path.resolve() and not case.path.is_dir():
                verdict.fail(f"{result.display_name}: named explicitly but only skipped")
            message = f"{result.display_name}: {result.error}"
            _judge_message(verdict, case, result.display_name, message)
        elif result.outcome != "ingested":
            verdict.fail(f"{result.display_name}: unexpected outcome {result.outcome!r}")
    named = [r for r in bad if r.outcome in ("failed", "skipped")]
    if case.expect == ERROR and not named and bad:
        verdict.fail(f"expected a named error, but it was ingested ({verdict.outcomes})")
    if case.expect == PARTIAL and any(r.outcome == "failed" for r in bad):
        verdict.fail(f"expected an ingested (partial) result, got {verdict.outcomes}")
    for problem in consistency_problems():
        verdict.fail(problem, lost="twice" in problem or "produced" in problem)
    verdict.category = "crashed" if verdict.crashed else "error" if named else "partial"
    return verdict


def _judge_good(verdict: Verdict, results, good: Path) -> None:
    if len(results) != 1 or results[0].outcome != "ingested":
        verdict.fail(f"the good file was not ingested: {[r.as_dict() for r in results]}", lost=True)
        return
    if good not in _GOOD_COUNTS:
        _GOOD_COUNTS[good] = expected_good(good)
    runs, steps = _GOOD_COUNTS[good]
    stored = list(Run.objects.filter(source_file_id=results[0].file_id))
    if len(stored) != runs or sum(run.step_count for run in stored) != steps:
        verdict.fail(
            f"the good file gave {len(stored)} runs / "
            f"{sum(r.step_count for r in stored)} steps, not {runs} / {steps}",
            lost=True,
        )


def _judge_message(verdict: Verdict, case: Case, display_name: str, message: str) -> None:
    prefix = f"{display_name}: "
    if not message.startswith(prefix):
        verdict.fail(f"error does not start with the file's name: {message!r}")
        return
    if case.path.name not in message:
        verdict.fail(f"error does not name {case.path.name!r}: {message!r}")
    reason = message[len(prefix) :]
    if len(reason.strip()) < 10:
        verdict.fail(f"error without a reason: {message!r}")
    elif _INTERNAL.search(reason):
        verdict.fail(f"error is an internal error, not a reason: {message!r}", crash=True)


# --- the database after the batch ----------------------------------------------------------

_TABLES = {
    "run": Run._meta.db_table,
    "step": Step._meta.db_table,
    "call": Call._meta.db_table,
    "link": EntityLink._meta.db_table,
    "log": LogEntry._meta.db_table,
    "file": TraceFile._meta.db_table,
}
_BY_STATUS = " + ".join(
    f"r.steps_{s}" for s in ("pending", "running", "succeeded", "failed", "skipped", "cancelled")
)
# One row per run: its counters beside the rows it has. Raw SQL, few queries: the
# checks run after each of thousands of cases.
_RUN_SQL = """
SELECT r.external_id, r.format, f.status, r.step_count, {by_status},
       r.call_count, r.link_count, r.log_count,
       (SELECT count(*) FROM {step} s WHERE s.run_id = r.id AND s.synthetic = %s),
       (SELECT count(*) FROM {call} c WHERE c.run_id = r.id),
       (SELECT count(*) FROM {link} l WHERE l.run_id = r.id),
       (SELECT count(*) FROM {log} g WHERE g.run_id = r.id)
FROM {run} r LEFT JOIN {file} f ON f.id = r.source_file_id
""".format(by_status=_BY_STATUS, **_TABLES)
_GLOBAL_CHECKS = {
    "steps of no run": "SELECT count(*) FROM {step} x WHERE x.run_id NOT IN (SELECT id FROM {run})",
    "calls of no run": "SELECT count(*) FROM {call} x WHERE x.run_id NOT IN (SELECT id FROM {run})",
    "links of no run": "SELECT count(*) FROM {link} x WHERE x.run_id NOT IN (SELECT id FROM {run})",
    "logs of no run": "SELECT count(*) FROM {log} x WHERE x.run_id NOT IN (SELECT id FROM {run})",
    "steps whose parent is in another run": (
        "SELECT count(*) FROM {step} s JOIN {step} p ON p.id = s.parent_id "
        "WHERE p.run_id <> s.run_id"
    ),
    "calls whose step is in another run": (
        "SELECT count(*) FROM {call} c JOIN {step} s ON s.id = c.step_id WHERE s.run_id <> c.run_id"
    ),
    "links whose step is in another run": (
        "SELECT count(*) FROM {link} c JOIN {step} s ON s.id = c.step_id WHERE s.run_id <> c.run_id"
    ),
    "logs whose step is in another run": (
        "SELECT count(*) FROM {log} c JOIN {step} s ON s.id = c.step_id WHERE s.run_id <> c.run_id"
    ),
    "runs stored twice": (
        "SELECT count(*) FROM (SELECT 1 FROM {run} "
        "GROUP BY format, origin, external_id HAVING count(*) > 1) x"
    ),
    "step keys stored twice in a run": (
        "SELECT count(*) FROM (SELECT 1 FROM {step} GROUP BY run_id, key HAVING count(*) > 1) x"
    ),
}
_GLOBAL_SQL = "SELECT " + ", ".join(f"({sql})" for sql in _GLOBAL_CHECKS.values()).format(**_TABLES)
_NUMBERS_SQL = """
SELECT 'run', duration_ms, input, output, output_counters, attributes, completeness FROM {run}
UNION ALL SELECT 'step', duration_ms, input, output, attributes, NULL, NULL FROM {step}
UNION ALL SELECT 'call', duration_ms, input, output, attributes, NULL, NULL FROM {call}
UNION ALL SELECT 'link', NULL, attributes, NULL, NULL, NULL, NULL FROM {link}
UNION ALL SELECT 'log', NULL, fields, attributes, NULL, NULL, NULL FROM {log}
""".format(**_TABLES)
_PRODUCED_SQL = """
SELECT f.display_name, f.produced,
       (SELECT count(*) FROM {run} r WHERE r.source_file_id = f.id),
       (SELECT coalesce(sum(r.step_count), 0) FROM {run} r WHERE r.source_file_id = f.id)
FROM {file} f WHERE f.status = %s
""".format(**_TABLES)


def consistency_problems() -> list[str]:
    """What is wrong with the database as a whole."""
    problems: list[str] = []
    with connection.cursor() as cursor:
        cursor.execute(_RUN_SQL, [False])
        for external_id, fmt, file_status, *numbers in cursor.fetchall():
            problems += _run_problems(f"run {external_id[:40]!r} ({fmt})", file_status, numbers)
        cursor.execute(_GLOBAL_SQL)
        for name, count in zip(_GLOBAL_CHECKS, cursor.fetchone(), strict=True):
            if count:
                problems.append(f"{count} {name}")
        cursor.execute(_NUMBERS_SQL)
        for table, duration, *documents in cursor.fetchall():
            if isinstance(duration, float) and not math.isfinite(duration):
                problems.append(f"a {table} with duration {duration}")
            if any(_non_finite(document) for document in documents):
                problems.append(f"a {table} with NaN or Infinity in its JSON")
        cursor.execute(_PRODUCED_SQL, [TraceFile.FileStatus.OK])
        for name, produced, runs, steps in cursor.fetchall():
            produced = json.loads(produced) if isinstance(produced, str) else produced or {}
            # A file owns at most what it holds: a run it holds may belong to a file that
            # held it too and was read later (two zip members of the same bytes).
            if "runs" in produced and (runs > produced["runs"] or steps > produced["steps"]):
                problems.append(
                    f"{name}: produced says {produced}, it has {runs} runs, {steps} steps"
                )
    return problems


def _run_problems(where: str, file_status: str | None, numbers: list[int]) -> list[str]:
    step_count, by_status, calls, links, logs, *actual = numbers
    problems = []
    if file_status != TraceFile.FileStatus.OK:
        problems.append(f"{where} belongs to no file or to a failed one")
    if step_count != actual[0]:
        problems.append(f"{where}: step_count {step_count}, but {actual[0]} steps")
    if by_status != step_count:
        problems.append(f"{where}: steps by status add up to {by_status}, not {step_count}")
    for name, counted, rows in zip(
        ("calls", "links", "logs"), (calls, links, logs), actual[1:], strict=True
    ):
        if counted != rows:
            problems.append(f"{where}: counts {counted} {name}, has {rows}")
    return problems


class _NonFinite(Exception):
    pass


def _refuse_constant(name: str) -> None:
    raise _NonFinite(name)


def _non_finite(value: Any) -> bool:
    """Whether a stored JSON value holds NaN or Infinity (SQLite gives its text)."""
    if isinstance(value, str):
        try:
            value = json.loads(value, parse_constant=_refuse_constant)
        except _NonFinite:
            return True
        except ValueError:
            return False
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return True
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


# --- the summary --------------------------------------------------------------------------

_COLUMNS = ("cases", "error", "partial", "crashed", "lost")


@pytest.fixture(scope="session")
def corpus_results(request):
    results: dict[str, dict] = {}
    yield results
    selected = set()
    for item in request.session.items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if getattr(item, "module", None) is None or item.module.__name__ != __name__:
            continue
        if "case" in params:
            selected.add(params["case"].name)
        elif "fmt" in params:
            selected.add(f"huge-string/{params['fmt']}")
    merged, pool = _merge_workers(results)
    # Only a run of the whole corpus writes the table (not one narrowed by -k).
    everything = {case.name for case in CASES} | {f"huge-string/{f}" for f in HUGE_FORMATS}
    if selected == everything and everything <= set(merged):
        _write_summary({name: merged[name] for name in everything})
        if pool is not None:
            shutil.rmtree(pool, ignore_errors=True)


def _merge_workers(results: dict[str, dict]) -> tuple[dict[str, dict], Path | None]:
    """Under pytest-xdist each worker has its own session: they pool their results
    in one directory, and whoever finishes last sees them all."""
    run_id = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if not run_id:
        return results, None
    pool = Path(tempfile.gettempdir()) / f"tracer-corpus-results-{run_id}"
    pool.mkdir(exist_ok=True)
    with open(pool / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        (pool / f"{worker}.json").write_text(json.dumps(results))
        merged: dict[str, dict] = {}
        for part in sorted(pool.glob("*.json")):
            merged.update(json.loads(part.read_text()))
    return merged, pool


SECTION = "## Bad-input corpus"


def _write_summary(results: dict[str, dict]) -> None:
    """Write this corpus's section of the reliability report (other tests write
    other sections of the same file: only this one is replaced)."""
    families: dict[str, Counter] = {}
    for result in results.values():
        row = families.setdefault(result["family"], Counter())
        row["cases"] += 1
        row[result["category"]] += 1
        row["lost"] += result["lost"]
    total = sum(families.values(), Counter())
    vendor = connection.vendor
    lines = [
        SECTION,
        "",
        "Written by `tests/test_hardening_corpus.py` at the end of a run of the whole",
        f"corpus (database: {vendor}). Each case is a bad input generated from the samples",
        "by `tests/corpus.py`, ingested in one batch with a known-good file: the good file",
        "must be ingested whole; the bad one must fail with an error naming the file and",
        "the reason, or be ingested with a self-consistent partial result. Regenerate",
        "with `make reliability` (a plain test run writes var/RELIABILITY-<database>.md).",
        "",
        "| case family | cases | failed with a named error | partial | crashed (must be 0) "
        "| lost/duplicated runs (must be 0) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [_row(name, families[name]) for name in sorted(families)]
    lines += [
        _row("**total**", total),
        "",
        "- *failed with a named error*: the file (or an archive member, or a directory",
        "  entry) refused with `<file name>: <reason>`, nothing of it written.",
        "- *partial*: ingested; every run's counters match its rows, every step's parent",
        "  is in its run, no NaN or Infinity stored.",
        "- *crashed*: an exception escaped the batch, the error was an internal one, or",
        "  the batch hung.",
        "- *lost/duplicated runs*: the good file's run missing or changed, or a run",
        "  stored or counted twice.",
        "",
    ]
    target = reliability_target(vendor)
    target.parent.mkdir(exist_ok=True)
    (REPO / "var").mkdir(exist_ok=True)
    details = REPO / "var" / f"corpus-results-{vendor}.json"
    details.write_text(json.dumps(results, indent=1, sort_keys=True))
    with open(Path(tempfile.gettempdir()) / "tracer-reliability.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        old = target.read_text() if target.exists() else "# Reliability\n"
        new = _replace_section(old, SECTION, "\n".join(lines))
        if new != old:
            target.write_text(new)


def _replace_section(text: str, heading: str, section: str) -> str:
    """`text` with the level-2 section under `heading` replaced, or inserted as the
    first section."""
    lines = text.rstrip("\n").split("\n")
    if heading in lines:
        start = lines.index(heading)
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), None)
    else:
        first = next((i for i, line in enumerate(lines) if line.startswith("## ")), None)
        start = end = first if first is not None else len(lines)
    before = "\n".join(lines[:start]).rstrip("\n")
    after = "\n".join(lines[end:]) if end is not None else ""
    return before + "\n\n" + section.rstrip("\n") + "\n" + ("\n" + after + "\n" if after else "")


def _row(name: str, counts: Counter) -> str:
    return f"| {name} | " + " | ".join(str(counts[column]) for column in _COLUMNS) + " |"


# --- the tests ----------------------------------------------------------------------------


def run_case(case: Case, monkeypatch, results: dict, seconds: float = CASE_SECONDS) -> Verdict:
    for name, value in case.patches:
        monkeypatch.setattr(archives, name, value)
    good = good_file_for(case)
    started = time.perf_counter()
    try:
        with deadline(seconds):
            report = ingest_paths([case.path, good])
            verdict = judge(case, report, good)
    except CaseTimeout as exc:
        verdict = Verdict(category="crashed")
        verdict.fail(f"hung: {exc}", crash=True)
    except Exception as exc:
        verdict = Verdict(category="crashed")
        verdict.fail(f"an exception escaped the batch: {type(exc).__name__}: {exc}", crash=True)
    if verdict.crashed:
        verdict.category = "crashed"
    results[case.name] = {
        "family": case.family,
        "category": verdict.category,
        "lost": verdict.lost,
        "seconds": round(time.perf_counter() - started, 3),
    }
    return verdict


@pytest.mark.django_db
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_beside_a_good_file(case: Case, monkeypatch, corpus_results):
    verdict = run_case(case, monkeypatch, corpus_results)
    assert not verdict.problems, "\n".join([*verdict.problems, f"outcomes: {verdict.outcomes}"])


@pytest.fixture(scope="session")
def huge_files(tmp_path_factory) -> dict[str, Case]:
    """The 100 MB string cases, written once per session (streamed: never in memory)."""
    directory = tmp_path_factory.mktemp("huge")
    return {fmt: huge_string_case(SAMPLES, directory, fmt) for fmt in HUGE_FORMATS}


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.django_db
@pytest.mark.parametrize("fmt", HUGE_FORMATS)
def test_a_100_mb_string(fmt, huge_files, monkeypatch, corpus_results):
    case = huge_files[fmt]
    before = _rss_mb()
    verdict = run_case(case, monkeypatch, corpus_results, seconds=HUGE_SECONDS)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert not verdict.problems, "\n".join([*verdict.problems, f"outcomes: {verdict.outcomes}"])
    size_mb = case.path.stat().st_size / 2**20
    # ru_maxrss is the process's peak so far: it can only under-report this test's growth.
    assert peak - before < HUGE_MEMORY_FACTOR * size_mb, f"peak {peak:.0f} MB from {before:.0f}"


@pytest.mark.django_db
def test_the_checks_see_what_they_look_for():
    """The corpus is only as good as its checks: damage a database and watch them fail."""
    ingest_paths([GOOD, GOOD_ALT])
    assert consistency_problems() == []
    duck, green = Run.objects.get(format="duckflux"), Run.objects.get(format="greentic")
    Run.objects.filter(pk=duck.pk).update(step_count=F("step_count") + 1)
    assert any("step_count" in problem for problem in consistency_problems())
    Run.objects.filter(pk=duck.pk).update(step_count=F("step_count") - 1)
    step = Step.objects.filter(run=duck).first()
    Step.objects.filter(pk=step.pk).update(parent=Step.objects.filter(run=green).first())
    assert any("parent is in another run" in problem for problem in consistency_problems())
    Step.objects.filter(pk=step.pk).update(parent=None)
    if connection.vendor == "postgresql":  # SQLite stores a NaN float as NULL
        Step.objects.filter(pk=step.pk).update(duration_ms=float("nan"))
        assert any("duration nan" in problem for problem in consistency_problems())
    case = Case("x", Path("/tmp/x.json"), ERROR)
    for reason in ("internal error while ingesting (KeyError: 'a')", "KeyError: 'a'", "x"):
        verdict = Verdict()
        _judge_message(verdict, case, "/tmp/x.json", f"/tmp/x.json: {reason}")
        assert verdict.problems, reason
    verdict = Verdict()
    _judge_message(verdict, case, "/tmp/x.json", "/tmp/x.json: invalid JSON at line 3, column 1")
    assert verdict.problems == []
