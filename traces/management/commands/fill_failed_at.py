from django.core.management.base import BaseCommand, CommandError

from traces.ingest.failure_counts import FILL_BATCH, fill_missing_failed_at
from traces.models import Step


class Command(BaseCommand):
    help = (
        "Give the failed steps that have no failure time (Step.failed_at) theirs: their "
        "start, else their run's. An ingest by code older than migration 0032 leaves it "
        "empty (run it after such an ingest, e.g. by a worker not stopped before "
        "`migrate`); such steps are missing from the failed-steps list and the failing-now "
        "strip. In batches, newest first; running it again changes nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=FILL_BATCH)
        parser.add_argument("--dry-run", action="store_true", help="only count what is missing")

    def handle(self, *args, batch_size, dry_run, **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be 1 or more")
        if dry_run:
            missing = Step.objects.filter(status="failed", failed_at__isnull=True).count()
            self.stdout.write(f"{_steps(missing)} without a failure time")
            return
        filled = untimed = 0
        for number, batch in enumerate(fill_missing_failed_at(batch_size), start=1):
            filled += batch.filled
            untimed += batch.untimed
            if batch.filled:
                self.stdout.write(f"batch {number}: filled {_steps(batch.filled)}")
        self.stdout.write(f"filled the failure time of {_steps(filled)}")
        if untimed:
            self.stdout.write(
                f"{_steps(untimed)} left without one: neither they nor their run have a start"
            )


def _steps(n: int) -> str:
    return f"{n:,} failed step{'' if n == 1 else 's'}"
