"""What an ingest did: one FileResult per file, and the batch's IngestReport (the
`ingest --json` document)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from django.db.models import Count, Sum

from traces.models import Run


def _counter() -> Counter:
    """An empty Counter without `Counter.__init__` (which calls `update()`): a
    rescan of 10,000 unchanged files makes 20,000 of them."""
    return Counter.__new__(Counter)


@dataclass
class FileResult:
    path: str
    display_name: str
    outcome: str  # ingested | unchanged | failed | skipped
    format: str = ""
    error: str = ""
    counts: Counter = field(default_factory=_counter)
    runs_added: list[int] = field(default_factory=list)
    runs_updated: list[int] = field(default_factory=list)
    runs_unchanged: list[int] = field(default_factory=list)
    file_id: int | None = None
    # What the file holds (also the runs it gave unchanged): its `produced`.
    held: Counter = field(default_factory=_counter)
    # An upload whose content an ingested file at another path has: that file's path
    # (`file_id` is that file's, whose runs the upload holds).
    same_as: str = ""

    def as_dict(self) -> dict:
        return {
            "path": self.display_name,
            "logical_path": self.path,
            "file_id": self.file_id,
            "outcome": self.outcome,
            "format": self.format,
            "error": self.error,
            "runs_added": self.runs_added,
            "runs_updated": self.runs_updated,
            "runs_unchanged": self.runs_unchanged,
            "same_as": self.same_as,
            **{name: self.counts[name] for name in ("runs", "steps", "calls", "links", "logs")},
        }

    @classmethod
    def from_dict(cls, data: dict) -> FileResult:
        """Back from `as_dict()` (a background job keeps its results as JSON)."""
        counts = Counter(
            {name: data.get(name, 0) for name in ("runs", "steps", "calls", "links", "logs")}
        )
        return cls(
            path=data.get("logical_path", data["path"]),
            display_name=data["path"],
            outcome=data["outcome"],
            format=data.get("format", ""),
            error=data.get("error", ""),
            counts=counts,
            runs_added=list(data.get("runs_added", [])),
            runs_updated=list(data.get("runs_updated", [])),
            runs_unchanged=list(data.get("runs_unchanged", [])),
            file_id=data.get("file_id"),
            same_as=data.get("same_as", ""),
        )


@dataclass
class IngestReport:
    files: list[FileResult] = field(default_factory=list)

    @property
    def failed(self) -> list[FileResult]:
        return [result for result in self.files if result.outcome == "failed"]

    def run_ids(self) -> list[int]:
        """Runs this batch added or updated, each once."""
        ids = dict.fromkeys(
            run_id for result in self.files for run_id in result.runs_added + result.runs_updated
        )
        return list(ids)

    def summary(self) -> dict:
        """The `ingest --json` document. Counts are those of the runs written,
        each counted once with its final content (a running snapshot replaced
        by its finished file in the same batch is one run)."""
        outcomes = Counter(result.outcome for result in self.files)
        totals = _run_totals(self.run_ids())
        return {
            "files": {
                "ingested": outcomes["ingested"],
                "unchanged": outcomes["unchanged"],
                "failed": outcomes["failed"],
                "skipped": outcomes["skipped"],
            },
            **totals,
            "errors": [{"path": r.display_name, "error": r.error} for r in self.failed],
            "skipped": [
                {"path": r.display_name, "reason": r.error}
                for r in self.files
                if r.outcome == "skipped"
            ],
        }


def _run_totals(run_ids: list[int]) -> dict:
    totals = Counter()
    for start in range(0, len(run_ids), 5000):
        chunk = Run.objects.filter(pk__in=run_ids[start : start + 5000]).aggregate(
            runs=Count("id"),
            steps=Sum("step_count"),
            calls=Sum("call_count"),
            links=Sum("link_count"),
            logs=Sum("log_count"),
        )
        totals.update({name: value or 0 for name, value in chunk.items()})
    return {name: totals[name] for name in ("runs", "steps", "calls", "links", "logs")}
