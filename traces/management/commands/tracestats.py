import json

from django.core.management.base import BaseCommand

from traces.queries.totals import trace_totals


class Command(BaseCommand):
    help = "Totals in the database: runs and steps by format and status, calls, links, logs, files."

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="print one JSON document")
        parser.add_argument(
            "--raw",
            action="store_true",
            help="count runs and steps by the source's own status word, not the normalised one",
        )

    def handle(self, *args, **options):
        totals = trace_totals(raw=options["raw"])
        if options["json"]:
            self.stdout.write(json.dumps(totals, sort_keys=True))
            return
        self._table(totals)

    def _table(self, totals: dict) -> None:
        formats = sorted(set(totals["runs"]) | set(totals["steps"]) | set(totals["calls"]))
        header = f"{'format':<10} {'runs':>7} {'steps':>9} {'calls':>9} {'links':>8} {'logs':>8}"
        self.stdout.write(header)
        self.stdout.write("-" * len(header))
        for name in formats:
            runs = sum(totals["runs"].get(name, {}).values())
            steps = sum(totals["steps"].get(name, {}).values())
            self.stdout.write(
                f"{name:<10} {runs:>7} {steps:>9} {totals['calls'].get(name, 0):>9} "
                f"{totals['links'].get(name, 0):>8} {totals['logs'].get(name, 0):>8}"
            )
        for kind in ("runs", "steps"):
            self.stdout.write(f"\n{kind} by status")
            for name in formats:
                by_status = totals[kind].get(name, {})
                words = ", ".join(f"{status} {n}" for status, n in sorted(by_status.items()))
                self.stdout.write(f"  {name:<10} {words}")
        files = totals["files"]
        self.stdout.write(f"\nfiles: {files['ok']} ok, {files['error']} with errors")
