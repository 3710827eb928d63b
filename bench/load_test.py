"""Pages under read load while a large ingest runs in another process.

A real server (gunicorn, production settings, 127.0.0.1, 2-4 gthread workers) on the
test database; a load generator (threads with keep-alive connections, or `wrk`
when it is installed and asked for) requests the site's pages round-robin: the runs
list, run pages and their tabs and htmx fragments, step panels, failed steps,
entities, files; meanwhile `manage.py ingest` writes a big generated runs database.
Every answer must be a 200, and none may mention "database is locked".

On demand, a minute of it (`make bench`, or directly):

    .venv/bin/python bench/load_test.py [--seconds 60] [--threads 32] [--workers 4]

A ~10 s version runs in the default suite: tests/test_faults.py.
"""

from __future__ import annotations

import http.client
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
LOCKED = b"database is locked"


def database_url() -> str:
    """The test database, for a server or ingest in another process."""
    from django.db import connection

    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def site_env(data_dir: Path, **extra: str) -> dict:
    """Production settings on loopback, on the test database."""
    env = dict(
        os.environ,
        DATABASE_URL=database_url(),
        TRACER_DATA_DIR=str(data_dir),
        TRACER_DEBUG="0",
        TRACER_SECRET_KEY="load-test-" + "x" * 50,
        TRACER_ALLOWED_HOSTS="127.0.0.1",
        TRACER_SSL_REDIRECT="0",
        TRACER_SECURE_COOKIES="0",
        TRACER_INGEST_IN_BACKGROUND="0",
        **extra,
    )
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    return env


def manage(env: dict, *args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """gunicorn serving the site until stopped."""

    def __init__(self, env: dict, workers: int = 2, threads: int = 4):
        self.env, self.workers, self.threads = env, workers, threads
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Server:
        collect = subprocess.run(
            [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
        )
        assert collect.returncode == 0, collect.stderr
        gunicorn = Path(sys.executable).with_name("gunicorn")
        command = [
            str(gunicorn),
            "tracer_site.wsgi",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(self.workers),
            "--worker-class",
            "gthread",
            "--threads",
            str(self.threads),
            "--log-level",
            "warning",
        ]
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self._wait_ready()
        return self

    def _wait_ready(self, seconds: float = 20) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.process.stderr.read().decode()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError("gunicorn did not start listening")

    def __exit__(self, *exc) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            _out, self.errors = self.process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _out, self.errors = self.process.communicate()


# --- what is requested ----------------------------------------------------------------------


def page_urls() -> list[tuple[str, bool]]:
    """(path, as htmx) of the site's read pages, from what is in the database now."""
    from django.urls import reverse

    from traces.models import EntityLink, Run, TraceFile

    urls = [
        (reverse("traces:run-list"), False),
        (reverse("traces:run-list") + "?status=failed", False),
        (reverse("traces:run-list") + "?format=runs&sort=duration", True),
        (reverse("traces:run-list") + "?q=sync", False),
        (reverse("traces:step-list") + "?status=failed", False),
        (reverse("traces:step-list") + "?status=failed&group=error", False),
        (reverse("traces:entity-list"), False),
        (reverse("traces:file-list"), False),
        (reverse("traces:source-list"), False),
    ]
    for run in Run.objects.order_by("-step_count")[:6]:
        page = run.get_absolute_url()
        urls += [(page, False), (reverse("api:run", args=[run.pk]), False)]
        urls += [(f"{page}?tab={tab}", False) for tab in ("timeline", "logs", "io")]
        urls.append((reverse("traces:run-tree", args=[run.pk]), True))
        step = run.steps.order_by("-status", "seq").first()
        if step is not None:
            urls += [(step.get_absolute_url(), False), (step.get_absolute_url(), True)]
    link = EntityLink.objects.exclude(entity_type__contains="/").order_by("pk").first()
    if link is not None:
        entity = reverse("traces:entity-detail", args=[link.entity_type, link.entity_id])
        urls.append((entity, False))
    for trace_file in TraceFile.objects.order_by("pk")[:3]:
        urls.append((trace_file.get_absolute_url(), False))
    return urls


# --- the load generator ---------------------------------------------------------------------


@dataclass
class LoadResult:
    requests: int = 0
    seconds: float = 0.0
    statuses: dict[int, int] = field(default_factory=dict)
    broken: int = 0  # connections that failed (no answer at all)
    locked: int = 0  # answers that mention "database is locked"
    failures: list[str] = field(default_factory=list)  # the first few, for the message
    latencies: list[float] = field(default_factory=list)
    by_path: dict[str, list[float]] = field(default_factory=dict)

    @property
    def errors(self) -> int:
        return self.broken + sum(n for status, n in self.statuses.items() if status != 200)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, share: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * share))] * 1000 if ordered else 0

    def summary(self) -> str:
        return (
            f"{self.requests} requests in {self.seconds:.1f} s ({self.rate:.0f}/s), "
            f"p50 {self.percentile(0.5):.0f} ms, p95 {self.percentile(0.95):.0f} ms, "
            f"p99 {self.percentile(0.99):.0f} ms, max {self.percentile(1.0):.0f} ms; "
            f"statuses {self.statuses}; "
            f"broken {self.broken}; locked {self.locked}; first failures {self.failures[:3]}"
        )

    def slowest(self, count: int = 5) -> list[tuple[str, float, float]]:
        """The paths with the highest mean latency: (path, mean ms, max ms)."""
        stats = [
            (path, sum(times) / len(times) * 1000, max(times) * 1000)
            for path, times in self.by_path.items()
        ]
        return sorted(stats, key=lambda item: -item[1])[:count]

    def note(self, failure: str) -> None:
        if len(self.failures) < 20:
            self.failures.append(failure)


def hammer(
    base_url: str,
    urls: list[tuple[str, bool]],
    *,
    threads: int,
    seconds: float,
    until=None,
    max_seconds: float | None = None,
) -> LoadResult:
    """Request `urls` round-robin from `threads` keep-alive clients for `seconds`
    (longer while `until()` is false, up to `max_seconds`)."""
    host = urlsplit(base_url)
    result = LoadResult()
    lock = threading.Lock()
    started = time.monotonic()
    hard_stop = started + (max_seconds or seconds)

    def running() -> bool:
        now = time.monotonic()
        if now >= hard_stop:
            return False
        return now - started < seconds or (until is not None and not until())

    def client(offset: int) -> None:
        conn = http.client.HTTPConnection(host.hostname, host.port, timeout=30)
        index = offset
        while running():
            path, htmx = urls[index % len(urls)]
            index += 1
            headers = {"HX-Request": "true"} if htmx else {}
            began = time.monotonic()
            try:
                conn.request("GET", path, headers=headers)
                response = conn.getresponse()
                body = response.read()
                status = response.status
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                conn = http.client.HTTPConnection(host.hostname, host.port, timeout=30)
                with lock:
                    result.requests += 1
                    result.broken += 1
                    result.note(f"{path}: {type(exc).__name__}: {exc}")
                continue
            took = time.monotonic() - began
            with lock:
                result.requests += 1
                result.latencies.append(took)
                result.by_path.setdefault(path + (" (htmx)" if htmx else ""), []).append(took)
                result.statuses[status] = result.statuses.get(status, 0) + 1
                if LOCKED in body:
                    result.locked += 1
                    result.note(f"{path}: database is locked")
                if status != 200:
                    result.note(f"{path}: {status}")
        conn.close()

    rng = random.Random(0)
    workers = [
        threading.Thread(target=client, args=(rng.randrange(len(urls)),), daemon=True)
        for _ in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    result.seconds = time.monotonic() - started
    return result


WRK_SCRIPT = """
local paths = {%s}
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args)
  index = math.random(#paths); bad = 0; locked = 0
end
function request()
  index = index %% #paths + 1
  local path = paths[index]
  return wrk.format("GET", path[1], path[2] and {["HX-Request"] = "true"} or {})
end
function response(status, headers, body)
  if status ~= 200 then bad = bad + 1 end
  if body and body:find("database is locked", 1, true) then locked = locked + 1 end
end
function done(summary, latency, requests)
  local b, l = 0, 0
  for _, thread in ipairs(threads) do b = b + thread:get("bad"); l = l + thread:get("locked") end
  local e = summary.errors
  io.write(string.format("RESULT %%d %%d %%d %%d %%d %%f %%f %%f %%f\\n", summary.requests,
    summary.duration, b, l, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max))
  io.write(string.format("SOCKET connect %%d read %%d write %%d timeout %%d\\n",
    e.connect, e.read, e.write, e.timeout))
end
"""


def hammer_wrk(
    base_url: str, urls: list[tuple[str, bool]], *, connections: int, seconds: float, tmp: Path
) -> LoadResult:
    """The same load from `wrk` (Debian's package), which costs the machine far less
    than Python clients. Status and body checks run in its Lua hooks."""
    entries = ", ".join(f'{{"{path}", {"true" if htmx else "false"}}}' for path, htmx in urls)
    script = tmp / "load.lua"
    script.write_text(WRK_SCRIPT % entries)
    # The Python clients' timeout: a slow answer is latency, not a broken connection.
    command = ["wrk", "-t2", f"-c{connections}", f"-d{int(seconds)}s", "--timeout", "30s"]
    command += ["-s", str(script)]
    out = subprocess.run([*command, base_url], capture_output=True, text=True, check=True).stdout
    line = next(line for line in out.splitlines() if line.startswith("RESULT"))
    sockets = next(line for line in out.splitlines() if line.startswith("SOCKET"))
    requests, micros, bad, locked, broken, *points = (float(x) for x in line.split()[1:])
    result = LoadResult(requests=int(requests), seconds=micros / 1e6, broken=int(broken))
    if broken:
        result.note(f"wrk socket errors: {sockets[len('SOCKET ') :]}")
    result.statuses = {200: int(requests - bad - broken)}
    if bad:
        result.statuses[0] = int(bad)  # some status other than 200 (wrk does not say which)
    result.locked = int(locked)
    # Four points (p50, p95, p99, max) stand in for the distribution.
    p50, p95, p99, most = (point / 1e6 for point in points)
    result.latencies = [p50] * 501 + [p95] * 450 + [p99] * 48 + [most]
    return result


# --- the scenario ---------------------------------------------------------------------------


@dataclass
class ScenarioResult:
    load: LoadResult
    ingest_seconds: float
    ingest_returncode: int
    source_runs: int
    stored_runs: int
    duplicated_runs: int
    server_errors: str
    writes: WriteProbe


class WriteProbe:
    """A small write from the site (a row added and removed) every `every` seconds
    while the ingest runs, timed: a file's ingest is one transaction, so a write
    waits for it (up to the SQLite busy timeout, then "database is locked")."""

    def __init__(self, every: float = 1.0):
        self.every = every
        self.waits: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> WriteProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=120)

    def _run(self) -> None:
        from django.db import OperationalError, connection

        from traces.models import TraceSource

        try:
            while not self._stop.wait(self.every):
                began = time.monotonic()
                try:
                    row = TraceSource.objects.create(path=f"/probe/{time.time_ns()}")
                    row.delete()
                except OperationalError as exc:
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                self.waits.append(time.monotonic() - began)
        finally:
            connection.close()

    def summary(self) -> str:
        most = max(self.waits, default=0)
        failed = f"{len(self.failures)} failed ({self.failures[0]})" if self.failures else ""
        return (
            f"{len(self.waits)} writes from the site meanwhile, the longest waited "
            f"{most:.1f} s, {failed or 'none failed'}"
        )


def read_load_during_ingest(
    tmp_path: Path,
    samples: Path,
    *,
    seconds: float,
    threads: int,
    workers: int,
    size: dict,
    ingesting: bool = True,
    use_wrk: bool = False,
) -> ScenarioResult:
    """Load the samples, start the server, then ingest a generated runs database in
    another process while requesting pages for `seconds` (and until the ingest ends)."""
    from django.db.models import Count
    from generate_runs_db import generate_runs_db

    from traces.ingest.loader import ingest_paths
    from traces.models import Run

    assert ingest_paths([samples]).failed == []
    big = tmp_path / "big" / "runs-big.sqlite"
    big.parent.mkdir()
    counts = generate_runs_db(big, **size)
    urls = page_urls()
    env = site_env(tmp_path / "site")
    (tmp_path / "site").mkdir()
    with Server(env, workers=workers) as server, WriteProbe() as writes:
        began = time.monotonic()
        # Without an ingest (a baseline): `true` stands in for it and ends at once.
        ingest = manage(env, "ingest", str(big)) if ingesting else _nothing()
        ended: list[float] = []
        waiter = threading.Thread(target=lambda: (ingest.wait(), ended.append(time.monotonic())))
        waiter.start()
        if use_wrk:
            load = hammer_wrk(server.url, urls, connections=threads, seconds=seconds, tmp=tmp_path)
        else:
            load = hammer(
                server.url,
                urls,
                threads=threads,
                seconds=seconds,
                until=lambda: ingest.poll() is not None,
                max_seconds=seconds * 6,
            )
        _out, ingest_errors = ingest.communicate(timeout=300)
        waiter.join()
        ingest_seconds = ended[0] - began
    assert ingest.returncode == 0, ingest_errors
    if not ingesting:
        ingest_paths([big])
    runs = Run.objects.filter(source_file__path=str(big.resolve()))
    dupes = runs.values("external_id").annotate(n=Count("id")).filter(n__gt=1).count()
    return ScenarioResult(
        load=load,
        ingest_seconds=ingest_seconds,
        ingest_returncode=ingest.returncode,
        source_runs=counts["runs"],
        stored_runs=runs.count(),
        duplicated_runs=dupes,
        server_errors=server.errors.decode(errors="replace")[-2000:],
        writes=writes,
    )


def _nothing() -> subprocess.Popen:
    return subprocess.Popen(["true"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_pages_under_read_load_for_a_minute_during_a_large_ingest(tmp_path):
    seconds = float(os.environ.get("LOAD_SECONDS", 60))
    threads = int(os.environ.get("LOAD_THREADS", 32))
    workers = int(os.environ.get("LOAD_WORKERS", min(4, max(2, os.cpu_count() or 2))))
    ingesting = os.environ.get("LOAD_INGEST", "1") != "0"
    use_wrk = os.environ.get("LOAD_WRK", "1") != "0" and shutil.which("wrk") is not None
    size = {"runs": 500, "steps": 50_000, "calls": 100_000}
    result = read_load_during_ingest(
        tmp_path,
        ROOT / "samples",
        seconds=seconds,
        threads=threads,
        workers=workers,
        size=size,
        ingesting=ingesting,
        use_wrk=use_wrk,
    )
    during = "during a large ingest" if ingesting else "without an ingest (baseline)"
    client = "wrk connections" if use_wrk else "Python clients"
    print(
        f"\n## read load {during} ({workers} gunicorn workers, {threads} {client})\n"
        f"{result.load.summary()}\ningest of {size} took {result.ingest_seconds:.1f} s; "
        f"runs stored {result.stored_runs} of {result.source_runs}\n{result.writes.summary()}\n"
        "slowest pages (mean / max ms): "
        + (
            ", ".join(f"{path} {mean:.0f}/{most:.0f}" for path, mean, most in result.load.slowest())
            or "(wrk: n/a)"
        )
    )
    assert result.load.errors == 0 and result.load.locked == 0, result.load.summary()
    assert result.stored_runs == result.source_runs and result.duplicated_runs == 0


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--threads", type=int, default=32, help="load generator clients")
    parser.add_argument("--workers", type=int, help="gunicorn workers (default 2-4 by cores)")
    parser.add_argument(
        "--no-ingest", action="store_true", help="a baseline: the same load with no ingest"
    )
    parser.add_argument(
        "--python-clients", action="store_true", help="Python threads even if wrk is installed"
    )
    args = parser.parse_args()
    os.environ["LOAD_WRK"] = "0" if args.python_clients else "1"
    os.environ["LOAD_INGEST"] = "0" if args.no_ingest else "1"
    os.environ["LOAD_SECONDS"] = str(args.seconds)
    os.environ["LOAD_THREADS"] = str(args.threads)
    if args.workers:
        os.environ["LOAD_WORKERS"] = str(args.workers)
    sys.exit(pytest.main([__file__, "-m", "slow", "-s", "-p", "no:cacheprovider"]))


if __name__ == "__main__":
    main()
