"""Base pydantic models for the API: camelCase on the wire, bounded, strict about extras."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict
from pydantic.alias_generators import to_camel
from starlette.responses import Response


class ApiModel(BaseModel):
    """Response model: camelCase JSON."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, from_attributes=True)


class ApiInput(BaseModel):
    """Request body: camelCase, unknown fields refused."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", str_max_length=1024
    )


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:59:59-14:00 is past year 9999 in UTC
        raise ValueError("date is out of range once converted to UTC") from None


#: A timezone-aware input datetime, converted to UTC (so storing it cannot overflow).
UtcDateTime = Annotated[AwareDatetime, AfterValidator(_to_utc)]


class JSONBytes(Response):
    """A JSON body serialized once by the route (orjson), sent as is: the route's
    ``response_model`` still documents it in OpenAPI, and tests hold the two equal."""

    media_type = "application/json"
