"""What operators told the hub: registered chargers and id tags, folded from admin events."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from schemas.events import (
    AdminEvent,
    ChargerRegistered,
    ChargerUnregistered,
    IdTagRemoved,
    IdTagStatus,
    IdTagUpserted,
)


class ChargerRecord(msgspec.Struct, frozen=True):
    password_hash: str


class IdTagRecord(msgspec.Struct, frozen=True):
    status: IdTagStatus
    expiry_date: str
    parent_id_tag: str


class IdTagVerdict(msgspec.Struct, frozen=True):
    """The 1.6 ``IdTagInfo`` the hub answers with."""

    status: IdTagStatus
    expiry_date: str = ""
    parent_id_tag: str = ""


class Registry:
    """Mutable state, but only ever changed by :meth:`apply`, so it is a fold of the stream."""

    def __init__(self) -> None:
        self.chargers: dict[str, ChargerRecord] = {}
        self.id_tags: dict[str, IdTagRecord] = {}
        self.last_seq = 0

    def apply(self, event: AdminEvent, seq: int = 0) -> None:
        match event:
            case ChargerRegistered(charge_point_id=cp, password_hash=password_hash):
                self.chargers[cp] = ChargerRecord(password_hash)
            case ChargerUnregistered(charge_point_id=cp):
                self.chargers.pop(cp, None)
            case IdTagUpserted(id_tag=tag, status=status, expiry_date=expiry, parent_id_tag=parent):
                self.id_tags[tag] = IdTagRecord(status, expiry, parent)
            case IdTagRemoved(id_tag=tag):
                self.id_tags.pop(tag, None)
        self.last_seq = max(self.last_seq, seq)

    def is_known(self, charge_point_id: str) -> bool:
        return charge_point_id in self.chargers

    def authorize(self, id_tag: str, now: datetime) -> IdTagVerdict:
        """Decide on an id tag the way OCPP 1.6 §5.2 expects: unknown tags are ``Invalid``."""
        record = self.id_tags.get(id_tag)
        if record is None:
            return IdTagVerdict("Invalid")
        status = record.status
        if status == "Accepted" and record.expiry_date and _parse_time(record.expiry_date) <= now:
            status = "Expired"
        if status == "Accepted" and record.parent_id_tag:
            parent = self.id_tags.get(record.parent_id_tag)
            if parent is not None and parent.status == "Blocked":
                status = "Blocked"
        return IdTagVerdict(status, record.expiry_date, record.parent_id_tag)


def _parse_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
