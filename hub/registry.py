"""What operators told the hub: registered chargers, id tags and wallets, folded from events."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final

import msgspec

from hub.domain.cistring import ci
from hub.domain.security_profiles import ProfileUpgrades, raised
from hub.domain.wallets import Wallets
from hub.subjects import COMMAND_WILDCARD
from schemas.events import (
    ChargerAccepted,
    ChargerRegistered,
    ChargerUnregistered,
    CommandFinished,
    CommandRequested,
    Event,
    IdTagRemoved,
    IdTagStatus,
    IdTagUpserted,
    OcppVersion,
    PasswordRotationEnded,
    PasswordRotationStarted,
    SecurityProfile,
)

# The events a registry folds; it follows only these, not every admin event.
REGISTRY_SUBJECTS: Final = (
    "ev.admin.charger.>",
    "ev.admin.idtag.>",
    "ev.admin.wallet.>",
    "ev.wallet.>",
    # ChangeConfiguration SecurityProfile and its answer raise a charger's profile.
    COMMAND_WILDCARD,
)


class ChargerRecord(msgspec.Struct, frozen=True):
    password_hash: str
    # A password rotation under way: its id, and the new password's hash, which logs in too
    # until the rotation ends.
    rotation_id: str = ""
    pending_hash: str = ""
    # As registered; None: by its password if it has one (hub.domain.security_profiles).
    security_profile: SecurityProfile | None = None
    # OCPP versions it may connect with, within the gateway's; empty: the gateway's.
    ocpp_versions: tuple[OcppVersion, ...] = ()

    @property
    def password_hashes(self) -> tuple[str, ...]:
        """The hashes a login may match: the password, then the one being rotated to."""
        rotating = (self.pending_hash,) if self.pending_hash else ()
        return (self.password_hash, *rotating)


class IdTagRecord(msgspec.Struct, frozen=True):
    status: IdTagStatus
    # None: never expires. An expiry that does not parse is kept as the earliest possible
    # moment, so a bad admin event fails closed instead of crashing Authorize.
    expires_at: datetime | None
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
        # Id tags by the operator's spelling, and that spelling by ci(tag): tags are
        # CiString20 (OCPP 1.6 §7.15), so `aQCKZ` is the tag registered as `Aqckz`.
        self.id_tags: dict[str, IdTagRecord] = {}
        self._spelling: dict[str, str] = {}
        self.wallets = Wallets()
        # Chargers an operator accepted: the pending boot policy answers them Accepted.
        self.accepted: set[str] = set()
        self.upgrades = ProfileUpgrades()
        self.last_seq = 0
        # Told every event once it is folded (the gateway acts on some); they only read.
        self.listeners: list[Callable[[Event], None]] = []

    def apply(self, event: Event, seq: int = 0) -> None:
        match event:
            case ChargerRegistered(charge_point_id=cp, password_hash=password_hash):
                # A registration replaces everything, a rotation under way included.
                self.chargers[cp] = ChargerRecord(
                    password_hash,
                    security_profile=event.security_profile,
                    ocpp_versions=event.ocpp_versions,
                )
            case ChargerUnregistered(charge_point_id=cp):
                self.chargers.pop(cp, None)
                self.accepted.discard(cp)
            case ChargerAccepted(charge_point_id=cp):
                self.accepted.add(cp)
            case PasswordRotationStarted(charge_point_id=cp, rotation_id=rotation):
                if (record := self.chargers.get(cp)) is not None:
                    self.chargers[cp] = msgspec.structs.replace(
                        record, rotation_id=rotation, pending_hash=event.password_hash
                    )
            case PasswordRotationEnded(charge_point_id=cp, rotation_id=rotation):
                record = self.chargers.get(cp)
                # An end of a rotation that is not the current one (superseded by a
                # registration) changes nothing.
                if record is not None and record.rotation_id == rotation:
                    completed = event.outcome == "completed"
                    self.chargers[cp] = msgspec.structs.replace(
                        record,
                        password_hash=record.pending_hash if completed else record.password_hash,
                        rotation_id="",
                        pending_hash="",
                    )
            case CommandRequested() | CommandFinished():
                self._upgrade(event)
            case IdTagUpserted(id_tag=tag, status=status, expiry_date=expiry, parent_id_tag=parent):
                self._forget_tag(tag)
                self.id_tags[tag] = IdTagRecord(status, _expiry(expiry), parent)
                self._spelling[ci(tag)] = tag
            case IdTagRemoved(id_tag=tag):
                self._forget_tag(tag)
            case _:
                self.wallets.apply(event)
        self.last_seq = max(self.last_seq, seq)
        for listener in self.listeners:
            listener(event)

    def _upgrade(self, event: CommandRequested | CommandFinished) -> None:
        """A charger that took a higher security profile (ChangeConfiguration) must connect
        with it from then on: its registration asks for it. Unregistered chargers have no
        registration to raise."""
        upgrade = self.upgrades.apply(event)
        if upgrade is None:
            return
        cp, configured = upgrade
        if (record := self.chargers.get(cp)) is not None:
            profile = raised(record.security_profile, bool(record.password_hash), configured)
            self.chargers[cp] = msgspec.structs.replace(record, security_profile=profile)

    def _forget_tag(self, id_tag: str) -> None:
        spelling = self._spelling.pop(ci(id_tag), None)
        if spelling is not None:
            self.id_tags.pop(spelling, None)

    def id_tag(self, id_tag: str) -> IdTagRecord | None:
        """The record of ``id_tag`` in any case."""
        spelling = self._spelling.get(ci(id_tag))
        return None if spelling is None else self.id_tags.get(spelling)

    def is_known(self, charge_point_id: str) -> bool:
        return charge_point_id in self.chargers

    def rotating(self, charge_point_id: str) -> bool:
        record = self.chargers.get(charge_point_id)
        return record is not None and bool(record.rotation_id)

    def authorize(self, id_tag: str, now: datetime) -> IdTagVerdict:
        """Decide on an id tag the way OCPP 1.6 §5.2 expects: unknown tags are ``Invalid``."""
        record = self.id_tag(id_tag)
        if record is None:
            return IdTagVerdict("Invalid")
        status = record.status
        if status == "Accepted" and record.expires_at is not None and record.expires_at <= now:
            status = "Expired"
        if status == "Accepted" and record.parent_id_tag:
            parent = self.id_tag(record.parent_id_tag)
            if parent is not None and parent.status == "Blocked":
                status = "Blocked"
        expiry = format_time(record.expires_at) if record.expires_at is not None else ""
        # idTagInfo.parentIdTag is IdToken (20 characters); a longer one is not sent at all.
        parent_tag = record.parent_id_tag if len(record.parent_id_tag) <= 20 else ""
        return IdTagVerdict(status, expiry, parent_tag)


def parse_time(value: str) -> datetime:
    """An ISO 8601 date-time; without an offset it is taken as UTC. Raises ValueError."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _expiry(value: str) -> datetime | None:
    if not value:
        return None
    try:
        return parse_time(value)
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
