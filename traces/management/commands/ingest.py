import json
import sys
import time

from django.core.management.base import BaseCommand, CommandError

from traces.ingest import FORMATS
from traces.ingest.loader import ingest_paths


class Command(BaseCommand):
    help = "Ingest trace files, directories (recursively), SQLite databases and zip archives."

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="+", metavar="PATH")
        parser.add_argument("--format", choices=sorted(FORMATS), help="skip sniffing: read as this")
        parser.add_argument("--json", action="store_true", help="print one JSON summary")
        parser.add_argument(
            "--watch",
            action="store_true",
            help="keep rescanning the paths (Ctrl-C to stop); changed files are re-read",
        )
        parser.add_argument("--interval", type=float, default=2.0, help="seconds between scans")

    def handle(self, *paths, **options):
        failed = False
        while True:
            report = ingest_paths(
                options["paths"], format=options["format"], progress=self._progress_bar()
            )
            self._print(report, as_json=options["json"])
            failed = bool(report.failed)
            if not options["watch"]:
                break
            time.sleep(options["interval"])
        if failed:
            raise CommandError(f"{len(report.failed)} file(s) failed", returncode=1)

    def _print(self, report, *, as_json: bool) -> None:
        summary = report.summary()
        if as_json:
            summary.pop("skipped")
            self.stdout.write(json.dumps(summary))
            return
        files = summary["files"]
        self.stdout.write(
            f"files: {files['ingested']} ingested, {files['unchanged']} unchanged, "
            f"{files['failed']} failed, {files['skipped']} skipped · runs {summary['runs']} · "
            f"steps {summary['steps']} · calls {summary['calls']} · links {summary['links']} · "
            f"logs {summary['logs']}"
        )
        for error in summary["errors"]:
            self.stderr.write(f"error: {error['error']}")

    def _progress_bar(self):
        stream = sys.stderr
        if not stream.isatty():
            return None

        def show(done: int, total: int, name: str) -> None:
            width = 30
            filled = width * done // max(total, 1)
            bar = "█" * filled + "░" * (width - filled)
            stream.write(f"\r{bar} {done}/{total} {name[-40:]:<40}")
            if done == total:
                stream.write("\n")
            stream.flush()

        return show
