from django.core.management.base import BaseCommand, CommandError

from traces import sources as scans


class Command(BaseCommand):
    help = (
        "Rescan the enabled trace sources whose schedule has come round (all of them with --all); "
        "with --loop, keep doing so: a simple scheduler process."
    )

    def add_arguments(self, parser):
        parser.add_argument("--all", action="store_true", help="every enabled source, due or not")
        parser.add_argument("--loop", action="store_true", help="keep going until interrupted")
        parser.add_argument(
            "--interval", type=float, default=60.0, help="with --loop: seconds between rounds"
        )
        parser.add_argument("--max-rounds", type=int, help="with --loop: stop after N rounds")

    def handle(self, *args, **options):
        if not options["loop"]:
            if self._round(everything=options["all"], quiet=False):
                raise CommandError("some sources had failures", returncode=1)
            return
        rounds = 0
        try:
            while options["max_rounds"] is None or rounds < options["max_rounds"]:
                if rounds:
                    scans._sleep(options["interval"])
                    scans.refresh_connection()
                self._round(everything=options["all"], quiet=True)
                rounds += 1
        except KeyboardInterrupt:
            self.stderr.write(f"stopped after {rounds} round(s)")

    def _round(self, *, everything: bool, quiet: bool) -> bool:
        """Scan what is due, one line per source; whether any had failures."""
        due = scans.sources_to_scan(everything=everything)
        if not due and not quiet:
            self.stdout.write("no source is due")
        troubled = False
        for source in due:
            try:
                summary = scans.rescan(source)
            except scans.ScanInProgress as exc:
                self.stdout.write(f"{source.path}: skipped, {exc}")
                continue
            self.stdout.write(scans.report_line(source, summary))
            troubled = troubled or bool(summary["error"] or summary["files"]["failed"])
        return troubled
