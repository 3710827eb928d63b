"""What a transaction changes in the read models, gathered and applied once.

Every upsert-maintained counter (RunCount, FailureCause, EntityCounter,
EntityTypeCounter, TypeBucket, TypeStep) is changed by adding signed deltas. A
file's writes (runs added, rewritten, deleted) gather theirs into a
`ReadModelDeltas`; a file whose savepoint is released hands them to its
transaction's (batches.WriteBatch), one rolled back drops them, and the
transaction applies the sum once, just before it commits: table by table in
APPLY_ORDER, keys sorted within each table. Two writers (`ingest --jobs`, several
`db_worker`s) then take the counter rows they share in one global order and
hold them only for the moment before their commits, so they cannot deadlock on
them. Everything stays in the transaction of the rows counted: the read models
are exact at every commit.

What is taken off (runs deleted or rewritten) is read from the rows before they
go (their contributions, with their time bounds) and applied with the rest: a
net change per key, then rows left counting nothing deleted, then the bounds of
the keys that lost rows read again from the rows left (what the transaction
added is in them too)."""

from __future__ import annotations

from collections import Counter

from .entity_counts import apply_entities, merge_entities, merge_removed_entities
from .failure_counts import apply_failure_causes, merge_causes
from .run_counts import apply_run_counts
from .type_trends import TypeTrendDeltas

# The order every writer takes the read models' rows in (see the module docstring).
APPLY_ORDER = (
    "RunCount", "FailureCause", "EntityCounter", "EntityTypeCounter", "TypeBucket", "TypeStep",
)  # fmt: skip


class ReadModelDeltas:
    """Signed changes to the read models, by table and key."""

    __slots__ = ("causes", "causes_removed", "entities", "entities_removed", "run_counts", "trends")

    def __init__(self):
        self.run_counts: Counter = Counter()  # (format, run_type, status) -> n
        self.causes: dict[tuple, list] = {}  # FailureCause key -> [count, first, last]
        self.causes_removed: dict[tuple, list] = {}  # likewise, taken off
        # (type, id) -> [*FIGURES, first, last, {external id}] / [*FIGURES, first, last, external]
        self.entities: dict[tuple, list] = {}
        self.entities_removed: dict[tuple, list] = {}
        self.trends = TypeTrendDeltas()  # TypeBucket's and TypeStep's

    def __bool__(self) -> bool:
        return bool(
            any(self.run_counts.values()) or self.causes or self.causes_removed
            or self.entities or self.entities_removed or self.trends
        )  # fmt: skip

    def merge(self, other: ReadModelDeltas) -> None:
        """Add `other`'s changes to these (a savepoint released into its transaction)."""
        self.run_counts.update(other.run_counts)
        merge_causes(self.causes, other.causes)
        merge_causes(self.causes_removed, other.causes_removed)
        merge_entities(self.entities, other.entities)
        merge_removed_entities(self.entities_removed, other.entities_removed)
        self.trends.merge(other.trends)

    def clear(self) -> None:
        self.run_counts.clear()
        self.causes.clear()
        self.causes_removed.clear()
        self.entities.clear()
        self.entities_removed.clear()
        self.trends.clear()

    def apply(self) -> None:
        """Write the changes, in APPLY_ORDER, and forget them."""
        apply_run_counts(self.run_counts)
        apply_failure_causes(self.causes, self.causes_removed)
        apply_entities(self.entities, self.entities_removed)  # EntityCounter, EntityTypeCounter
        self.trends.apply()  # TypeBucket, TypeStep
        self.clear()
