from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q

from traces.ingest.failure_counts import FILL_BATCH, fill_missing_failed_at
from traces.models import Step


class Command(BaseCommand):
    help = (
        "Give the failed steps that miss their failure time (Step.failed_at: their start, "
        "else their run's) or whether it is estimated (Step.failed_at_estimated: their "
        "run's times are) what they miss. An ingest by code older than the migrations "
        "that added them (0032, 0033) leaves them empty: run this after such an ingest "
        "(a worker not stopped before `migrate`), or those steps are missing from the "
        "failed-steps list and the failing-now strip, or counted there as timed. In "
        "batches, newest first; running it again changes nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=FILL_BATCH)
        parser.add_argument("--dry-run", action="store_true", help="only count what is missing")

    def handle(self, *args, batch_size, dry_run, **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be 1 or more")
        if dry_run:
            missing = Q(failed_at__isnull=True) | Q(failed_at_estimated__isnull=True)
            count = Step.objects.filter(missing, status="failed").count()
            self.stdout.write(f"{_steps(count)} without a failure time or its kind")
            return
        filled = untimed = 0
        for number, batch in enumerate(fill_missing_failed_at(batch_size), start=1):
            filled += batch.filled
            untimed += batch.untimed
            if batch.filled:
                self.stdout.write(f"batch {number}: filled {_steps(batch.filled)}")
        self.stdout.write(f"filled what {_steps(filled)} missed")
        if untimed:
            self.stdout.write(
                f"{_steps(untimed)} left without a time: neither they nor their run have a start"
            )


def _steps(n: int) -> str:
    return f"{n:,} failed step{'' if n == 1 else 's'}"
