"""Memory requests (pydantic v2) and responses (JSON-ready TypedDicts).

The TypedDicts come from typing_extensions: pydantic needs that one to describe
responses on Python 3.11.

Requests forbid unknown fields so a typo is a 422, not a silently ignored
filter, and bound every string and list. Naive datetimes are read as UTC. What
depends on module.json (declared types, capabilities, the batch limit) is
checked by the service, which can name the field.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, NotRequired

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)
from typing_extensions import TypedDict

# A stored value is at most this large as compact JSON.
MAX_VALUE_BYTES = 1024 * 1024
MAX_TTL_SECONDS = 10 * 366 * 86400
MAX_VALUE_DEPTH = 32

OrgId = Annotated[str, StringConstraints(min_length=1, max_length=128)]
UserId = Annotated[str, StringConstraints(min_length=1, max_length=128)]
MemoryType = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Query = Annotated[str, StringConstraints(min_length=1, max_length=1000)]
Weight = Annotated[float, Field(ge=0, le=1000, allow_inf_nan=False)]


def as_utc(moment: datetime) -> datetime:
    """Aware datetimes converted to UTC; naive ones taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:59-14:00 is past the last datetime in UTC
        raise ValueError("date is out of range once converted to UTC") from None


def _depth(value: Any) -> int:
    """How deeply containers nest in a JSON value (a scalar is 0, {"a": 1} is 1)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, level)
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, level + 1) for child in children)
    return deepest


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MemoryContext(_Request):
    org_id: OrgId
    user_id: UserId | None = None


class StoreRequest(_Request):
    key: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    value: dict[str, Any]
    memory_type: MemoryType
    context: MemoryContext
    tags: list[Tag] = Field(default_factory=list, max_length=32)
    ttl_seconds: int | None = Field(default=None, gt=0, le=MAX_TTL_SECONDS)

    @field_validator("value")
    @classmethod
    def _json_value(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            encoded = json.dumps(value, allow_nan=False, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"value must be plain JSON (no NaN or infinity): {exc}") from None
        if len(encoded.encode()) > MAX_VALUE_BYTES:
            raise ValueError(f"value is larger than {MAX_VALUE_BYTES} bytes as JSON")
        # The one free-form text in a request (constrained str fields refuse them):
        # JSON may escape a lone surrogate that no UTF-8 store or answer can hold.
        # Escaped output shows any surrogate, paired or not, as \ud8..-\udf..: only
        # then is it worth encoding the value as UTF-8 to find out.
        if "\\ud" in encoded:
            try:
                json.dumps(value, ensure_ascii=False).encode()
            except UnicodeEncodeError:
                raise ValueError("value text must be valid Unicode: no lone surrogates") from None
        if _depth(value) > MAX_VALUE_DEPTH:
            # Deeper values would store, then fail every answer that returns them.
            raise ValueError(f"value nests deeper than {MAX_VALUE_DEPTH} levels")
        return value


class BatchStoreRequest(_Request):
    # The upper bound is KSE max_batch_items, checked by the service.
    items: list[StoreRequest] = Field(min_length=1)


class DateRange(_Request):
    """``[start, end)``: start inclusive, end exclusive, like created_after/created_before."""

    start: datetime | None = None
    end: datetime | None = None

    @field_validator("start", "end")
    @classmethod
    def _utc(cls, moment: datetime | None) -> datetime | None:
        return as_utc(moment) if moment is not None else None

    @model_validator(mode="after")
    def _bounded(self) -> DateRange:
        if self.start is None and self.end is None:
            raise ValueError("date_range needs 'start', 'end' or both")
        return self


class SearchFilters(_Request):
    type: MemoryType | Annotated[list[MemoryType], Field(min_length=1, max_length=32)] | None = None
    module: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None
    tags: Annotated[list[Tag], Field(min_length=1, max_length=32)] | None = Field(
        default=None, description="Every tag listed must be on the memory"
    )
    created_after: datetime | None = Field(default=None, description="Inclusive")
    created_before: datetime | None = Field(default=None, description="Exclusive")
    date_range: DateRange | None = None

    @field_validator("created_after", "created_before")
    @classmethod
    def _utc(cls, moment: datetime | None) -> datetime | None:
        return as_utc(moment) if moment is not None else None

    @model_validator(mode="after")
    def _window_not_empty(self) -> SearchFilters:
        after, before = self.window()
        if after is not None and before is not None and after >= before:
            raise ValueError(
                "created_after, created_before and date_range leave no time between them"
            )
        return self

    def types(self) -> tuple[str, ...]:
        if self.type is None:
            return ()
        if isinstance(self.type, str):
            return (self.type,)
        return tuple(dict.fromkeys(self.type))

    @property
    def temporal(self) -> bool:
        """Whether any date filter is set (they need the "temporal" capability)."""
        return (
            self.created_after is not None
            or self.created_before is not None
            or self.date_range is not None
        )

    def window(self) -> tuple[datetime | None, datetime | None]:
        """The intersection of created_after/created_before and date_range: ``[after, before)``."""
        lower = [self.created_after]
        upper = [self.created_before]
        if self.date_range is not None:
            lower.append(self.date_range.start)
            upper.append(self.date_range.end)
        lows = [moment for moment in lower if moment is not None]
        highs = [moment for moment in upper if moment is not None]
        return (max(lows) if lows else None, min(highs) if highs else None)


class Weights(_Request):
    semantic: Weight = 0.7
    keyword: Weight = 0.3

    @model_validator(mode="after")
    def _not_both_zero(self) -> Weights:
        if self.semantic == 0 and self.keyword == 0:
            raise ValueError("weights: semantic and keyword cannot both be zero")
        return self


SearchMode = Literal["hybrid", "keyword", "semantic"]


class SearchRequest(_Request):
    query: Query
    context: MemoryContext
    filters: SearchFilters = Field(default_factory=SearchFilters)
    limit: int = Field(default=10, ge=1, le=100)
    include_highlights: bool = True
    mode: SearchMode = "hybrid"
    weights: Weights = Field(default_factory=Weights)


class UserContext(_Request):
    """A context naming the user: insights are always about one user."""

    org_id: OrgId
    user_id: UserId


class InsightsRequest(_Request):
    context: UserContext
    insight_type: Annotated[
        str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")
    ] = "user_behavior"
    query: Query | None = None
    days: int = Field(default=30, ge=1, le=3650)
    memory_type: MemoryType | None = None


# Responses -------------------------------------------------------------------
class ContextView(TypedDict):
    org_id: str
    user_id: str | None


class MetadataView(TypedDict):
    type: str
    module: str
    version: str
    index: str
    tags: list[str]
    created_at: str | None
    updated_at: str | None
    indexed_at: str | None
    expires_at: str | None


class StoredMemory(TypedDict):
    memory_id: str
    key: str
    index: str
    created: bool
    metadata: MetadataView
    context: ContextView


class BatchItem(TypedDict):
    index: int
    key: str
    status: Literal["stored", "failed"]
    memory_id: NotRequired[str]
    error: NotRequired[str]


class BatchResult(TypedDict):
    stored: int
    failed: int
    items: list[BatchItem]


class ScoreParts(TypedDict):
    semantic: float | None
    keyword: float | None


class SearchHit(TypedDict):
    memory_id: str
    key: str
    value: dict[str, Any]
    metadata: MetadataView
    context: ContextView
    score: float
    scores: ScoreParts
    highlights: list[str]


class AppliedWeights(TypedDict):
    semantic: float
    keyword: float


class SemanticView(TypedDict):
    available: bool
    reason: str | None


class SearchResult(TypedDict):
    results: list[SearchHit]
    total: int
    query_time: float
    mode: SearchMode
    modes_used: list[str]
    weights: AppliedWeights
    semantic: SemanticView


class TagCount(TypedDict):
    tag: str
    count: int


class InsightWindow(TypedDict):
    days: int
    start: str
    end: str


class InsightSummary(TypedDict):
    memories: int
    by_type: dict[str, int]
    by_module: dict[str, int]
    top_tags: list[TagCount]
    first_seen: str | None
    last_seen: str | None
    active_days: int
    mean_relevance: float


class InsightsResult(TypedDict):
    user_id: str
    org_id: str
    insight_type: str
    window: InsightWindow
    insights: InsightSummary
    evidence: list[str]
    confidence_score: float
    generated_at: str


class ArchiveResult(TypedDict):
    archived: int
    file: str | None
    before: str
