"""Request and response bodies (pydantic v2).

Requests forbid unknown fields so a typo is a 422, not a silently ignored
option. Numbers are strict finite floats: bools, strings, NaN and infinities are
refused (Python's JSON parser would otherwise accept ``NaN``). The number of
values is bounded by MAX_VALUES, which is a setting, so that check happens in
the core when the data is resolved.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints, model_validator

from .analysis import AnalysisType
from .transform import TransformOperation

# Integers stay integers (min/max of [1, 2] is 1, not 1.0); floats must be finite.
FiniteNumber = StrictInt | Annotated[float, Field(strict=True, allow_inf_nan=False)]
EventName = Annotated[
    str, StringConstraints(max_length=100, pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Values(_Request):
    values: list[FiniteNumber]


class _DataRequest(_Request):
    data: Values | None = None
    data_reference: Annotated[str, StringConstraints(min_length=1, max_length=1024)] | None = Field(
        default=None, description="File under DATA_DIR/inputs holding the values"
    )

    @model_validator(mode="after")
    def _one_source(self) -> _DataRequest:
        if (self.data is None) == (self.data_reference is None):
            raise ValueError("provide exactly one of 'data' or 'data_reference'")
        return self


class AnalyzeRequest(_DataRequest):
    analysis_type: AnalysisType = "statistical"


class TransformRequest(_DataRequest):
    operation: TransformOperation
    factor: FiniteNumber | None = None
    descending: bool = False

    @model_validator(mode="after")
    def _factor_for_scale(self) -> TransformRequest:
        if self.operation == "scale" and self.factor is None:
            raise ValueError("operation 'scale' needs a 'factor'")
        if self.operation != "scale" and self.factor is not None:
            raise ValueError("'factor' only applies to operation 'scale'")
        return self


class EventRequest(_Request):
    type: EventName
    payload: dict[str, Any] = Field(default_factory=dict)


class TaskAccepted(BaseModel):
    task_id: str
    status: str
    operation: str
    created_at: str
    location: str


class TaskView(BaseModel):
    task_id: str
    operation: str
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    created_at: str
    started_at: str | None
    finished_at: str | None
    result: dict[str, Any] | None
    error: str | None


class TaskPage(BaseModel):
    tasks: list[TaskView]
    next_cursor: str | None = Field(
        description="Pass as ?cursor= for the next (older) page; null on the last page"
    )


class EventAccepted(BaseModel):
    type: str
    status: Literal["acknowledged", "task_submitted"]
    task: TaskAccepted | None = None


class Health(BaseModel):
    status: str
    module: str
    version: str
    active_tasks: int
    queued_tasks: int


class Problem(BaseModel):
    """Every 4xx/5xx answer: a human-readable reason."""

    detail: str | list[dict[str, Any]]
