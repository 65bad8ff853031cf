"""The analysts' raw log: one row per stored event, frames with their payload as JSON text."""

from __future__ import annotations

from typing import Final

import msgspec

from hub.domain.timeutil import CH_TIME_END_MS, CH_TIME_FIRST_MS
from projections.rows import EventRow
from schemas.events import Event, OcppFrame

_encoder: Final = msgspec.json.Encoder()
# The first byte of a payload that goes as it is: an object or an array.
_AS_IS: Final = (b"{", b"[")


def payload_json(text: bytes) -> msgspec.Raw:
    """The payload column's JSON: an ASCII object or array as it is (no escaping here, no
    unescaping in ClickHouse: most of an event row's cost), else the text as a string."""
    if text[:1] in _AS_IS and text.isascii():
        return msgspec.Raw(text)
    return msgspec.Raw(_encoder.encode(text.decode(errors="replace")))


def _tag(event: Event) -> str:
    tag = type(event).__struct_config__.tag
    assert isinstance(tag, str)
    return tag


def _received_ms(ms: int) -> int:
    """The time column's milliseconds, which ClickHouse makes the DateTime64 of
    (``projections.reshapes``): within what ch_time formats, as when the row carried its
    text, and failing as that did beyond it."""
    if not CH_TIME_FIRST_MS <= ms < CH_TIME_END_MS:
        raise OverflowError("date value out of range")
    return ms


def event_row(seq: int, event: Event) -> EventRow:
    if type(event) is OcppFrame:
        # Nearly every event of a stream is a frame: its row made with as few lookups as
        # it takes (replay's reading loop makes one for every event).
        ms = event.received_at
        if not CH_TIME_FIRST_MS <= ms < CH_TIME_END_MS:
            _received_ms(ms)
        return EventRow(
            seq=seq,
            received_ms=ms,
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
        received_ms=_received_ms(event.received_at),
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
        received_ms=0,
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
