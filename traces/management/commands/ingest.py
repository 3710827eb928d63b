import json
import sys

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from traces.ingest import FORMATS
from traces.ingest.loader import ingest_paths
from traces.ingest.parallel import ingest_in_parallel
from traces.ingest.report import IngestReport
from traces.sources import watch_paths


class Command(BaseCommand):
    help = "Ingest trace files, directories (recursively), SQLite databases and zip archives."

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="+", metavar="PATH")
        parser.add_argument("--format", choices=sorted(FORMATS), help="skip sniffing: read as this")
        parser.add_argument("--json", action="store_true", help="print one JSON summary")
        parser.add_argument(
            "--watch",
            action="store_true",
            help="keep rescanning the paths (Ctrl-C to stop); prints only when something changed",
        )
        parser.add_argument("--interval", type=float, default=2.0, help="seconds between scans")
        parser.add_argument("--max-scans", type=int, help="with --watch: stop after N scans")
        parser.add_argument(
            "--jobs",
            type=int,
            default=1,
            metavar="N",
            help="read the files with N processes sharing the database (one per core)",
        )

    def handle(self, *args, **options):
        if options["jobs"] < 1:
            raise CommandError("--jobs must be at least 1")
        if options["watch"] and options["jobs"] > 1:
            raise CommandError("--jobs does not combine with --watch")
        if options["watch"]:
            report = self._watch(options)
        elif options["jobs"] > 1:
            report = ingest_in_parallel(
                options["paths"], jobs=options["jobs"], format=options["format"]
            )
            self._print(report, as_json=options["json"])
        else:
            report = ingest_paths(
                options["paths"], format=options["format"], progress=self._progress_bar()
            )
            self._print(report, as_json=options["json"])
        if report is not None and report.failed:
            raise CommandError(f"{len(report.failed)} file(s) failed", returncode=1)

    def _watch(self, options) -> IngestReport | None:
        def show(report: IngestReport, changed: bool) -> None:
            if changed:
                stamp = "" if options["json"] else f"[{timezone.localtime():%H:%M:%S}] "
                self._print(report, as_json=options["json"], prefix=stamp)

        result = watch_paths(
            options["paths"],
            interval=options["interval"],
            max_scans=options["max_scans"],
            format=options["format"],
            on_scan=show,
            progress=self._progress_bar(),
        )
        if result.interrupted:
            failed = len(result.last.failed) if result.last else 0
            self.stderr.write(f"stopped after {result.scans} scan(s); last: {failed} failed")
        return result.last

    def _print(self, report: IngestReport, *, as_json: bool, prefix: str = "") -> None:
        summary = report.summary()
        if as_json:
            summary.pop("skipped")
            self.stdout.write(json.dumps(summary))
            return
        files = summary["files"]
        self.stdout.write(
            f"{prefix}files: {files['ingested']} ingested, {files['unchanged']} unchanged, "
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
