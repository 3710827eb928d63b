import time

from django.core.management.base import BaseCommand, CommandError

from traces.ingest import recount


class Command(BaseCommand):
    help = (
        "Recount every read model (runs by status, each run's summaries, failure causes "
        "and slices, entity counters, trends, repeated steps) from the rows it summarises "
        "and report the rows that differ: exit status 1 if any does. With --repair, "
        "rewrite the differing rows from the recount (exit status 1 too, as fsck's "
        "'corrected'; 0 when nothing differed), in one transaction that keeps "
        "writers (ingests, deletes) waiting while it recounts and writes; pages go on "
        "reading. Safe while the site serves."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--repair",
            action="store_true",
            help="rewrite the read models that differ from their recount",
        )
        parser.add_argument(
            "--only",
            nargs="+",
            metavar="MODEL",
            choices=[recount.label(m) for m in recount.CHECKED],
            help="only these read models (RunCount, FailureCause, ..., Step.failed_at, ...)",
        )
        parser.add_argument(
            "--show", type=int, default=5, metavar="N", help="differing rows shown a model"
        )

    def handle(self, *args, repair, only, show, **options):
        start = time.perf_counter()
        differing = []
        for difference in recount.check(only):
            self._report(difference, show)
            if difference:
                differing.append(recount.label(difference.read_model))
        seconds = time.perf_counter() - start
        if not differing:
            self.stdout.write(f"every read model equals its recount ({seconds:.1f} s)")
            return
        if not repair:
            raise CommandError(
                f"{len(differing)} read model(s) differ from their recount: "
                f"{', '.join(differing)} ({seconds:.1f} s; --repair rewrites them)",
                returncode=1,
            )
        start = time.perf_counter()
        # Recounted again under the locks: what differed may have changed meanwhile.
        for difference in recount.repair(differing):
            name = difference.read_model.name
            if isinstance(difference.read_model, recount.StoredColumn):
                self.stdout.write(f"repaired {name}: set {len(difference.wrong):,} rows")
            elif difference and difference.read_model.by_id:
                self.stdout.write(f"repaired {name}: updated {len(difference.missing):,} rows")
            elif difference:
                self.stdout.write(
                    f"repaired {name}: deleted {len(difference.wrong):,} rows, "
                    f"wrote {len(difference.missing):,}"
                )
        self.stdout.write(
            f"repaired in {time.perf_counter() - start:.1f} s (writers waited for each "
            "read model's recount and rewrite)"
        )
        # As fsck: 1 for "found and corrected", so a cron job running --repair still
        # tells that something had written around the ingest.
        raise CommandError(
            f"{len(differing)} read model(s) differed from their recount and were repaired: "
            f"{', '.join(differing)}",
            returncode=1,
        )

    def _report(self, difference: recount.Difference, show: int) -> None:
        model = difference.read_model
        if isinstance(model, recount.StoredColumn):
            line = f"{model.name}: {len(difference.wrong):,} wrong ({difference.seconds:.1f} s)"
        else:
            line = (
                f"{model.name}: {difference.rows:,} rows, {len(difference.wrong):,} wrong, "
                f"{len(difference.missing):,} missing ({difference.seconds:.1f} s)"
            )
        self.stdout.write(line)
        columns = ", ".join(model.columns)
        if difference and show:
            self.stdout.write(f"  ({columns})")
        for pk, row in difference.wrong[:show]:
            self.stdout.write(f"  - stored (id {pk}): {_shown(row)}")
        for row in difference.missing[:show]:
            self.stdout.write(f"  + recount: {_shown(row)}")


# A value shown of a differing row, at most: a minimap's starts are ~80,000 characters.
SHOWN_CHARS = 80


def _shown(row: tuple) -> str:
    """A differing row as printed: each long value cut, with its length."""
    values = []
    for value in row:
        text = repr(value)
        if len(text) > SHOWN_CHARS:
            text = f"{text[:SHOWN_CHARS]}… ({len(text):,} characters)"
        values.append(text)
    return f"({', '.join(values)}{',' if len(values) == 1 else ''})"
