"""The same four questions asked of Datasette over the SOURCE databases, beside our
pages and API over the ingested copy.

    nice .venv/bin/python bench/bench_datasette.py [--quick] [-n 20]

Datasette is installed in its own virtualenv (never in the project's):

    python3 -m venv /tmp/datasette-venv && /tmp/datasette-venv/bin/pip install datasette

(`--datasette PATH` to use another executable; without one the script says so and
stops.) It serves the source databases of bench_pages.py's 1,000,000-step mix
(the runs database of 2,000 runs, the one of the 100,000-step run, workflow.db)
on 127.0.0.1 (a free port, default settings, `sql_time_limit_ms` raised to 20 s so
that nothing is cut off), and each question is asked through its JSON API
(`/<db>.json?sql=...&_shape=array`, and for a run's steps also the table view
`/<db>/steps.json?run_id=...`), the median of N requests over one keep-alive
HTTP connection. Its floor, `/-/versions.json`, is measured the same way.

Our side: the matching pages and API endpoints over the ingested database
(bench_pages.py's, built if missing), in-process with Django's test Client, the
median of N requests, in the same run. Datasette's times include the loopback
HTTP round trip (see its floor); ours do not.
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _data import dataset, pages_environment  # noqa: E402

DEFAULT_DATASETTE = "/tmp/datasette-venv/bin/datasette"


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("-n", type=int, default=20)
    parser.add_argument("--datasette", default=DEFAULT_DATASETTE)
    return parser.parse_args()


ARGS = _args() if __name__ == "__main__" else None
HOME = pages_environment(ARGS.quick if ARGS else False)

import bench_pages  # noqa: E402  (Django, production settings)
from _measure import machine_lines, median, table  # noqa: E402
from bench_pages import Case  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402

from traces.models import Run  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Datasette:
    def __init__(self, executable: str, databases: dict[str, Path], workdir: Path):
        links = workdir / "datasette-dbs"
        links.mkdir()
        paths = []
        for name, path in databases.items():
            link = links / f"{name}{path.suffix}"
            link.symlink_to(path)
            paths.append(str(link))
        self.port = free_port()
        self.process = subprocess.Popen(
            [executable, "serve", *paths, "--host", "127.0.0.1", "--port", str(self.port),
             "--setting", "sql_time_limit_ms", "20000", "--setting", "max_returned_rows", "1000"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        self.conn = None
        for _ in range(300):
            try:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                self.get("/-/versions.json")
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise SystemExit(f"datasette did not start: {self.process.stderr.read().decode()}")

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            self.conn.request("GET", path)
            response = self.conn.getresponse()
        except (http.client.RemoteDisconnected, ConnectionError):
            # The server closes idle keep-alive connections (uvicorn: after 5 s).
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            self.conn.request("GET", path)
            response = self.conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"datasette {path}: {response.status} {body[:300]!r}")
        return response.status, body

    def time(self, path: str, n: int) -> tuple[float, int]:
        for _ in range(2):
            _status, body = self.get(path)
        times = []
        for _ in range(n):
            start = time.perf_counter()
            _status, body = self.get(path)
            times.append(time.perf_counter() - start)
        data = json.loads(body)
        rows = len(data) if isinstance(data, list) else len(data.get("rows", []))
        return median(times), rows

    def stop(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def sql_path(db: str, sql: str, **params) -> str:
    return f"/{db}.json?" + urlencode({"sql": sql, "_shape": "array", **params})


def main() -> None:
    args = ARGS
    executable = args.datasette
    if not (shutil.which(executable) or Path(executable).exists()):
        print(
            f"datasette not found at {executable}: install it with `python3 -m venv "
            "/tmp/datasette-venv && /tmp/datasette-venv/bin/pip install datasette`; skipped."
        )
        return
    version = subprocess.run([executable, "--version"], capture_output=True, text=True).stdout
    bench_pages.build(args.quick, HOME)
    call_command("collectstatic", interactive=False, verbosity=0)
    client = Client()
    t = bench_pages.find_targets(client)
    our_cases = {c.name: c for c in bench_pages.cases(t)}
    big = Run.objects.get(pk=t.big_run)
    wf = Run.objects.get(pk=t.wf_run)
    our_cases["api_roots"] = Case(
        "api_roots", "GET /api/runs/{big}/steps?parent=", f"/api/runs/{t.big_run}/steps",
        [], params={"parent": ""}, api=True,
    )  # fmt: skip
    sources = {
        "runs_main": dataset("pages-runs", args.quick)[0],
        "runs_big": dataset("pages-bigrun", args.quick)[0],
        "workflow": dataset("workflow", args.quick)[0],
    }
    workdir = Path(tempfile.mkdtemp(prefix="tracer-datasette-"))
    server = Datasette(executable, sources, workdir)
    questions = [
        (
            "failed steps, newest first (the runs database of the mix)",
            [("SQL", sql_path("runs_main",
              "select id, run_id, step_type, status, error, started_at, duration_ms from steps "
              "where status = 'failed' order by started_at desc limit 50"))],
            ["failed_rows", "failed", "api_failed"],
        ),
        (
            "a run's steps: the roots of the biggest run",
            [("SQL", sql_path("runs_big",
              "select * from steps where run_id = :run and parent_step_id is null "
              "order by step_index limit 200", run=big.external_id)),
             ("table view", "/runs_big/steps.json?"
              + urlencode({"run_id": big.external_id, "parent_step_id__isnull": "1",
                           "_sort": "step_index", "_size": "200"}))],
            ["run_big", "api_roots"],
        ),
        (
            f"an entity's links: customer {t.hot_customer} (most linked)",
            [("SQL", sql_path("runs_main",
              "select * from step_links where entity_type = 'customer' and entity_id = :id "
              "order by created_at desc limit 50", id=t.hot_customer))],
            ["entity_hot", "api_entity"],
        ),
        (
            "failures grouped by error (the causes box; Datasette groups raw messages)",
            [("SQL", sql_path("runs_main",
              "select error, count(*) as n, min(started_at), max(started_at) from steps "
              "where status = 'failed' group by error order by n desc limit 50"))],
            ["api_errors", "failed"],
        ),
        (
            "the entities list: entities by number of links",
            [("SQL", sql_path("runs_main",
              "select entity_type, entity_id, count(*) as n, count(distinct step_id) "
              "from step_links group by entity_type, entity_id order by n desc limit 50"))],
            ["entities", "api_entities"],
        ),
        (
            "an entity's subject steps: account acc_main (subject of every root step)",
            [("SQL", sql_path("runs_main",
              "select * from steps where entity_type = 'account' and entity_id = 'acc_main' "
              "order by started_at desc limit 50"))],
            ["entity_subject"],
        ),
        (
            "an execution's logs (workflow.db, execution_id unindexed as the source has it)",
            [("SQL", sql_path("workflow",
              "select * from execution_logs where execution_id = :id order by id limit 200",
              id=wf.external_id))],
            ["logs", "api_logs"],
        ),
    ]  # fmt: skip
    try:
        floor, _ = server.time("/-/versions.json", args.n)
        rows = []
        for question, requests, ours in questions:
            theirs, their_times = [], []
            for how, path in requests:
                took, count = server.time(path, args.n)
                their_times.append(took)
                theirs.append(f"{took * 1000:,.1f} ms ({how}, {count} rows)")
                print(f"datasette {question} {how}: {took * 1000:.1f} ms", file=sys.stderr)
            our, our_times = [], []
            for name in ours:
                result = bench_pages.measure(client, our_cases[name], args.n)
                our_times.append(result.page)
                our.append(f"{result.page * 1000:,.1f} ms ({our_cases[name].label})")
            ratio = f"{our_times[0] / their_times[0]:.2f}x"
            rows.append([question, "<br>".join(theirs), "<br>".join(our), ratio])
            print(f"ours {question}: {our}", file=sys.stderr)
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"\n## Datasette over the source databases vs our pages ({connection.vendor})\n")
    print("\n".join(machine_lines(connection.vendor)))
    print(
        f"- {version.strip()} (own virtualenv), default settings but sql_time_limit_ms=20000;"
        f" its HTTP floor (`/-/versions.json`): {floor * 1000:.1f} ms"
        f"\n- command: `nice .venv/bin/python bench/bench_datasette.py"
        f"{' --quick' if args.quick else ''} -n {args.n}`; medians of {args.n}\n"
    )
    headers = ["question", "Datasette (HTTP on 127.0.0.1)", "ours (in-process)",
               "ours first / Datasette SQL"]  # fmt: skip
    print(table(headers, rows, "lllr"))


if __name__ == "__main__":
    main()
