"""The API's JSON shapes: the search."""

from __future__ import annotations

from ninja import Schema
from pydantic import Field

from .common import RunRef
from .entities import EntityItem
from .runs import RunItem
from .steps import LogRow, StepItem


class SearchCounts(Schema):
    runs: int
    steps: int
    entities: int


class SearchExact(Schema):
    kind: str = Field(description="run, step or entity")
    url: str = Field(description="Its page.")


class SearchOut(Schema):
    """Runs, steps and entities matching a query, each kind newest first (entities by
    id), at most 20 of each; `counts` stop at 1,000 (`capped` says so)."""

    query: str
    runs: list[RunItem]
    steps: list[StepItem]
    entities: list[EntityItem]
    counts: SearchCounts
    capped: SearchCounts = Field(description="1 where a count stopped at 1,000, else 0.")
    exact: SearchExact | None = Field(
        description="The one run, step or entity whose id is exactly the query (the page "
        "opens it), if there is exactly one."
    )
    exact_matches: list[SearchExact] = Field(
        default_factory=list,
        description="Every run, step and entity whose id is exactly the query (at most 21 "
        "of each kind), found by id whatever the ranking; they come first in their lists.",
    )


class LogHit(LogRow):
    """A log line found across runs: LogRow, with its run."""

    run: RunRef


class LogSearch(Schema):
    query: str
    items: list[LogHit]
    count: int = Field(
        description="Matching lines from `before` on, up to 1,000; without words, the lines "
        "of this page (the newest lines are not counted)."
    )
    capped: bool = Field(description="More than 1,000 lines match; without words: more follow.")
    older: int | None = Field(description="`before` for the next, older, page; null at the end.")
