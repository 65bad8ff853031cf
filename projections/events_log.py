"""The analysts' raw log: one row per stored event, frames with their payload as JSON text."""

from __future__ import annotations

from typing import Final

import msgspec

from hub.domain.timeutil import ch_time
from projections.rows import EventRow
from schemas.events import Event, OcppFrame

_encoder: Final = msgspec.json.Encoder()


def payload_json(text: bytes) -> msgspec.Raw:
    """The payload column's JSON: an ASCII object or array as it is (no escaping here, no
    unescaping in ClickHouse: most of an event row's cost), else the text as a string."""
    if text[:1] in (b"{", b"[") and text.isascii():
        return msgspec.Raw(text)
    return msgspec.Raw(_encoder.encode(text.decode(errors="replace")))


def _tag(event: Event) -> str:
    tag = type(event).__struct_config__.tag
    assert isinstance(tag, str)
    return tag


def event_row(seq: int, event: Event) -> EventRow:
    if isinstance(event, OcppFrame):
        return EventRow(
            seq=seq,
            received_at=ch_time(event.received_at),
            type="ocpp.frame",
            charge_point_id=event.charge_point_id,
            ocpp_version=event.ocpp_version,
            direction=event.direction,
            message_type=event.message_type,
            unique_id=event.unique_id,
            action=event.action,
            payload=payload_json(bytes(event.payload)),
            error_code=event.error_code,
        )
    # Other events keep their whole body as the payload: nothing of the truth is hidden.
    return EventRow(
        seq=seq,
        received_at=ch_time(event.received_at),
        type=_tag(event),
        charge_point_id=str(getattr(event, "charge_point_id", "")),
        ocpp_version=str(getattr(event, "ocpp_version", "")),
        direction="",
        message_type="",
        unique_id=str(getattr(event, "unique_id", "")),
        action=str(getattr(event, "action", "")),
        payload=payload_json(_encoder.encode(event)),
        error_code=str(getattr(event, "error_code", "")),
    )


def undecodable_row(seq: int, data: bytes) -> EventRow:
    """A stored message today's code cannot read still gets its row, text as stored."""
    return EventRow(
        seq=seq,
        received_at=ch_time(0),
        type="undecodable",
        charge_point_id="",
        ocpp_version="",
        direction="",
        message_type="",
        unique_id="",
        action="",
        # Not JSON as far as anyone knows: always a string.
        payload=msgspec.Raw(_encoder.encode(data.decode(errors="replace"))),
        error_code="",
    )
