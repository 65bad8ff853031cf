"""Golden files of the event log, schema version 1.

Stored events are never rewritten, so every event type's v1 encoding must keep decoding, to
the same values, and re-encode to the very same bytes (msgspec's field order included). The
files in tests/golden/events_v1 were generated once from ``golden_samples()``::

    UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/unit/test_events_golden.py

Do not regenerate them to make a failing test pass: a failure means old events broke.
A new event type gets a new file (``UPDATE_GOLDEN=1`` writes only missing files). A field
added to an existing type must have a default: the stored file then lacks it, decodes to
the default, and re-encodes to its own bytes followed by the new fields.
"""

from __future__ import annotations

import os
import typing
from pathlib import Path
from typing import Any

import msgspec
import pytest

from schemas import events
from schemas.events import Event, decode_event, encode_event

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "golden" / "events_v1"


def event_types() -> list[type[msgspec.Struct]]:
    return list(typing.get_args(Event))


def tag_of(event_type: type[msgspec.Struct]) -> str:
    tag = event_type.__struct_config__.tag
    assert isinstance(tag, str)
    return tag


def golden_samples() -> dict[str, Event]:
    """One event per type, every field set, most away from its default."""
    base: dict[str, Any] = {"v": 1, "received_at": 1_772_600_767_890}
    link: dict[str, Any] = {
        **base,
        "charge_point_id": "CP-1.é",
        "gateway_id": "gw-0a1b2c3d",
        "connection_id": "c-5f0e",
    }
    admin: dict[str, Any] = {**base, "actor": "cli:operator"}
    derived: dict[str, Any] = {**base, "cause_seq": 1_234_567}
    samples: list[Event] = [
        events.OcppFrame(
            **link,
            id="0f9d2c4b1a8e7d6c5b4a39281706f5e4",
            ocpp_version="1.6",
            direction="in",
            message_type="CALL",
            unique_id="b1-42",
            action="BootNotification",
            payload=msgspec.Raw(b'{"chargePointVendor":"V\\u00e9", "chargePointModel":"M"}'),
            error_code="",
            error_description="",
        ),
        events.FrameRejected(
            **link,
            id="1e8c3b5a2d9f0e7c6b5a4d3c2b1a0f9e",
            ocpp_version="1.6",
            reason="schema_violation",
            error_code="OccurenceConstraintViolation",
            error_description="Object missing required field `chargePointModel` - at `$`",
            raw='[2,"b1-43","BootNotification",{"chargePointVendor":"V\\xff"}]\n\t"é"',
            unique_id="b1-43",
            action="BootNotification",
        ),
        events.ChargerConnected(
            **link,
            id="c-5f0e:opened",
            ocpp_version="1.6",
            remote_address="[::1]:50412",
            security_profile=2,
        ),
        events.ChargerDisconnected(
            **link, id="c-5f0e:closed", close_code=1006, close_reason="abnormal closure"
        ),
        events.ChargerReplaced(
            **link,
            id="c-5f0e:replaced",
            new_connection_id="c-77aa",
            new_gateway_id="gw-9f8e7d6c",
        ),
        events.CertificateRefused(
            **link,
            id="7a1c0e9b3d5f2a4c6e8b0d1f3a5c7e9b",
            unique_id="sc-1",
            reason="cn_mismatch",
            detail="the CSR's CN is 'CP-2', the charger is 'CP-1.é'",
        ),
        events.CertificateIssued(
            **link,
            id="8b2d1f0a4e6c3b5d7f9a1c2e4b6d8f0a",
            unique_id="sc-2",
            command_id="4f3c2b1a0e9d8c7b6a5f4e3d2c1b0a9f",
            serial="5e1f0c2a9b3d",
            subject="CN=CP-1.é",
            not_before=1_772_600_467_890,
            not_after=1_804_136_767_890,
            issuer="local",
            chain="-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        ),
        events.ConnectionRefused(
            **base,
            id="refused-1",
            charge_point_id="CP:1",
            gateway_id="gw-0a1b2c3d",
            reason="invalid_charge_point_id",
            remote_address="10.0.0.7:61000",
            path="/ocpp/CP%3A1",
        ),
        events.ChargerRegistered(
            **admin,
            id="admin-1",
            charge_point_id="CP-1.é",
            password_hash="$pbkdf2_sha256$i=60000$c2FsdHNhbHRzYWx0c2FsdA$ZGlnZXN0ZGlnZXN0ZGlnZXN0",
        ),
        events.ChargerUnregistered(**admin, id="admin-2", charge_point_id="CP-1.é"),
        events.ChargerAccepted(**admin, id="admin-accept-1", charge_point_id="CP-1.é"),
        events.PasswordRotationStarted(
            **admin,
            id="rotation-1",
            charge_point_id="CP-1.é",
            rotation_id="rotation-1",
            password_hash="$pbkdf2_sha256$i=60000$c2FsdHNhbHRzYWx0c2FsdA$ZGlnZXN0ZGlnZXN0ZGlnZXN0",
            command_id="5c1e0d2b7a9f4e3c8b6a1d0f2e4c6b8a",
        ),
        events.PasswordRotationEnded(
            **admin,
            id="rotation-1:ended",
            charge_point_id="CP-1.é",
            rotation_id="rotation-1",
            outcome="rejected",
            detail="NotSupported",
        ),
        events.IdTagUpserted(
            **admin,
            id="admin-3",
            id_tag="TAG-0001",
            status="Blocked",
            expiry_date="2027-01-01T00:00:00Z",
            parent_id_tag="GROUP-1",
        ),
        events.IdTagRemoved(**admin, id="admin-4", id_tag="TAG-0001"),
        events.TariffSet(
            **admin,
            id="admin-5",
            tariff_id="night-2027",
            charge_point_id="CP-1.é",
            currency="CHF",
            per_kwh="0.35",
            per_minute="0.02",
            session_fee="1.50",
            bands=(events.TariffBand(start="22:00", end="06:00", per_kwh="0.20", per_minute="0"),),
            effective_from=1_772_600_000_000,
        ),
        events.CommandRequested(
            **admin,
            id="admin-6",
            command_id="5b0c7e3a9d2f4e61a8b7c6d5e4f3a2b1",
            charge_point_id="CP-1.é",
            action="Reset",
            payload=msgspec.Raw(b'{"type":"Soft"}'),
            timeout_s=12.5,
        ),
        events.CommandFinished(
            **admin,
            id="admin-7",
            command_id="5b0c7e3a9d2f4e61a8b7c6d5e4f3a2b1",
            charge_point_id="CP-1.é",
            action="Reset",
            status="callerror",
            payload=msgspec.Raw(b'{"detail":"busy"}'),
            error_code="InternalError",
            error_description="the charger is busy",
        ),
        events.AccessDenied(
            **admin,
            id="admin-8",
            method="POST",
            path="/api/v1/chargers/CP-1.%C3%A9/reset",
            http_status=403,
            reason="role viewer may not send commands",
            charge_point_id="CP-1.é",
        ),
        events.WalletConfigured(
            **admin,
            id="admin-9",
            id_tag="TAG-0001",
            currency="CHF",
            hold_amount="25.00",
            min_balance="5",
        ),
        events.WalletCredited(
            **admin,
            id="admin-10",
            id_tag="TAG-0001",
            amount="-3.50",
            kind="adjustment",
            currency="CHF",
            reference="ticket-881",
            note="goodwill",
        ),
        events.SessionLimitsSet(
            **admin,
            id="admin-11",
            charge_point_id="CP-1.é",
            transaction_id=-7,
            limits=events.SessionLimits(
                max_energy_wh=12_500.5, max_duration_s=5400, max_cost="9.90"
            ),
        ),
        events.ClockTick(**base, id="tick-354520153578"),
        events.WalletHeld(
            **derived,
            id="held-1",
            id_tag="TAG-0001",
            charge_point_id="CP-1.é",
            transaction_id=42,
            amount="25.0000",
            currency="CHF",
        ),
        events.WalletSettled(
            **derived,
            id="settled-1",
            id_tag="TAG-0001",
            charge_point_id="CP-1.é",
            transaction_id=42,
            currency="CHF",
            held="25.0000",
            cost="7.1234",
            refund="17.8766",
            shortfall="0.0000",
            platform_fee="0.7123",
            operator_share="6.4111",
            fee_rate="0.10",
        ),
        events.WalletAdjusted(
            **derived,
            id="adjusted:CP-1.é:42:1:9.5000",
            id_tag="TAG-0001",
            charge_point_id="CP-1.é",
            transaction_id=42,
            currency="CHF",
            held="25.0000",
            cost="9.5000",
            amount="2.3766",
            refund="-2.3766",
            shortfall="0.0000",
            platform_fee="0.2377",
            operator_share="2.1389",
            fee_rate="0.10",
        ),
        events.AnomalyDetected(
            **derived,
            id="anomaly-1:detected",
            anomaly_id="anomaly-1",
            kind="ghost",
            charge_point_id="CP-1.é",
            connector_id=2,
            transaction_id=42,
            observed_at=1_772_600_700_000,
            detail="connector Available for 120 s with transaction 42 open",
        ),
        events.AnomalyResolved(
            **derived,
            id="anomaly-1:resolved",
            anomaly_id="anomaly-1",
            kind="ghost",
            charge_point_id="CP-1.é",
            connector_id=2,
            transaction_id=42,
            resolution="transaction stopped",
        ),
        events.IntegrityAction(
            **derived,
            id="anomaly-1:close_session",
            anomaly_id="anomaly-1",
            action="close_session",
            charge_point_id="CP-1.é",
            connector_id=2,
            transaction_id=42,
            command_id="cmd-9",
        ),
        events.LimitReached(
            **derived,
            id="limit-1",
            charge_point_id="CP-1.é",
            connector_id=2,
            transaction_id=42,
            limit="cost",
            source="prepaid",
            threshold="25.00",
            value="25.0312",
            command_id="cmd-10",
        ),
        events.SiteNodeSet(
            id="site-1",
            **admin,
            node_id="feeder-1",
            parent="grid",
            limit=63.0,
            unit="A",
            phases=3,
            voltage=230.0,
            daily=(events.DailyLimit(start="08:00", limit=40.0),),
        ),
        events.SiteNodeRemoved(**admin, id="site-2", node_id="feeder-1"),
        events.SiteLimitSet(**admin, id="site-3", node_id="grid", limit=150000.0, unit="W"),
        events.SiteConnectorAssigned(
            id="site-4",
            **admin,
            charge_point_id="CP-1",
            connector_id=1,
            node_id="feeder-1",
            priority=1,
            min_a=6.0,
            max_a=32.0,
            phases=1,
        ),
        events.AllocationDecided(
            **derived,
            id="allocation:CP-1:1:42",
            charge_point_id="CP-1",
            connector_id=1,
            session="17",
            limit_a=13.3,
            admitted=True,
            wants_a=32.0,
            drawn_a=12.9,
            node_id="feeder-1",
            reason="meter",
            command_id="cmd-11",
        ),
    ]
    return {tag_of(type(sample)): sample for sample in samples}


def write_golden_files() -> None:
    GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
    for tag, sample in golden_samples().items():
        path = GOLDEN_DIR / f"{tag}.json"
        if not path.exists():
            path.write_bytes(encode_event(sample) + b"\n")


if os.environ.get("UPDATE_GOLDEN") == "1":
    write_golden_files()


def _golden(tag: str) -> bytes:
    data = (GOLDEN_DIR / f"{tag}.json").read_bytes()
    assert data.endswith(b"\n") and not data.endswith(b"\n\n")
    return data[:-1]


def test_every_event_type_has_a_golden_file() -> None:
    tags = {tag_of(event_type) for event_type in event_types()}
    assert len(tags) == len(event_types()) >= 10
    assert tags == {path.stem for path in GOLDEN_DIR.glob("*.json")}
    assert tags == set(golden_samples())


@pytest.mark.parametrize("tag", sorted(tag_of(t) for t in event_types()))
def test_golden_event_decodes_and_re_encodes_byte_identically(tag: str) -> None:
    data = _golden(tag)
    event = decode_event(data)
    assert tag_of(type(event)) == tag
    assert event.v == 1
    stored = msgspec.json.decode(data)
    again = msgspec.json.decode(encode_event(event))
    # Fields added since the file was written come after the stored ones, at their defaults.
    assert list(again)[: len(stored)] == list(stored)
    assert {name: again[name] for name in stored} == stored
    assert encode_event(event).startswith(data[:-1])


@pytest.mark.parametrize("tag", sorted(tag_of(t) for t in event_types()))
def test_golden_event_keeps_its_values(tag: str) -> None:
    event = decode_event(_golden(tag))
    expected = golden_samples()[tag]
    assert type(event) is type(expected)
    for field in msgspec.structs.fields(expected):
        value, wanted = getattr(event, field.name), getattr(expected, field.name)
        if isinstance(wanted, msgspec.Raw):
            assert bytes(value) == bytes(wanted), field.name
        else:
            assert value == wanted, field.name


def test_golden_files_set_every_field_but_later_defaulted_ones() -> None:
    # A field missing from a golden file is not guarded by it, so only fields added after
    # the file was written, with a default and to the end of the type, may be missing.
    for tag, sample in golden_samples().items():
        stored = msgspec.json.decode(_golden(tag))
        assert stored["type"] == tag
        fields = msgspec.structs.fields(sample)
        names = [field.encode_name for field in fields]
        assert set(stored) - {"type"} <= set(names), tag
        missing = [field for field in fields if field.encode_name not in stored]
        assert all(field.required is False for field in missing), tag
        assert names[len(names) - len(missing) :] == [f.encode_name for f in missing], tag
