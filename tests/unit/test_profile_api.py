"""The smart-charging API's pure pieces: which rule a SetChargingProfile breaks against the
hub's model of the charger, and where in the body (hub/api/profile_state.py)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from hub.api.profile_state import ProfileBook, refusal
from hub.domain.profiles import Limits
from tests.projections.scenario import Builder
from tests.unit.test_profiles import set_profile


def body(connector: int = 1, **changes: Any) -> bytes:
    schedule = {
        "chargingRateUnit": "A",
        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.0}],
        **changes.pop("schedule", {}),
    }
    profile = {
        "chargingProfileId": 1,
        "stackLevel": 0,
        "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Absolute",
        "chargingSchedule": schedule,
        **changes,
    }
    return msgspec.json.encode({"connectorId": connector, "csChargingProfiles": profile})


PERIODS = "$.csChargingProfiles.chargingSchedule.chargingSchedulePeriod"
CASES = [
    (
        body(1, chargingProfilePurpose="ChargePointMaxProfile"),
        "charge_point_max_on_connector_0",
        "$.connectorId",
    ),
    (body(0, chargingProfilePurpose="TxProfile"), "tx_profile_on_a_connector", "$.connectorId"),
    (
        body(1, chargingProfilePurpose="TxProfile"),
        "tx_profile_needs_a_transaction",
        "$.csChargingProfiles.chargingProfilePurpose",
    ),
    (
        body(transactionId=4),
        "transaction_id_only_for_tx_profile",
        "$.csChargingProfiles.transactionId",
    ),
    (
        body(chargingProfileKind="Recurring", schedule={"startSchedule": "2026-01-01T00:00:00Z"}),
        "recurring_needs_recurrency_and_start",
        "$.csChargingProfiles.recurrencyKind",
    ),
    (
        body(chargingProfileKind="Recurring", recurrencyKind="Daily"),
        "recurring_needs_recurrency_and_start",
        "$.csChargingProfiles.chargingSchedule.startSchedule",
    ),
    (body(schedule={"chargingSchedulePeriod": []}), "periods", PERIODS),
    (
        body(schedule={"chargingSchedulePeriod": [{"startPeriod": 5, "limit": 1}]}),
        "first_period_at_0",
        f"{PERIODS}[0].startPeriod",
    ),
    (
        body(
            schedule={
                "chargingSchedulePeriod": [
                    {"startPeriod": 0, "limit": 1},
                    {"startPeriod": 9, "limit": 1},
                    {"startPeriod": 9, "limit": 2},
                ]
            }
        ),
        "periods_in_order",
        f"{PERIODS}[2].startPeriod",
    ),
    (
        body(
            schedule={
                "chargingSchedulePeriod": [
                    {"startPeriod": 0, "limit": 1},
                    {"startPeriod": 9, "limit": 1, "numberPhases": 4},
                ]
            }
        ),
        "number_phases",
        f"{PERIODS}[1].numberPhases",
    ),
    (body(schedule={"duration": 0}), "duration", "$.csChargingProfiles.chargingSchedule.duration"),
    (
        body(validFrom="2026-02-01T00:00:00Z", validTo="2026-01-01T00:00:00Z"),
        "validity",
        "$.csChargingProfiles.validTo",
    ),
    (body(validFrom="2026-02-30T00:00:00Z"), "date_time", "$.csChargingProfiles"),
    (body(stackLevel=4), "max_stack_level", "$.csChargingProfiles.stackLevel"),
    (
        body(schedule={"chargingRateUnit": "W"}),
        "charging_rate_unit",
        "$.csChargingProfiles.chargingSchedule.chargingRateUnit",
    ),
]


@pytest.mark.parametrize(("payload", "rule", "path"), CASES)
def test_a_broken_rule_is_named_with_the_path_of_what_breaks_it(
    payload: bytes, rule: str, path: str
) -> None:
    book = ProfileBook()
    book.charging.state.profiles["CP"] = book.model("CP")
    book.model("CP").limits = Limits(max_stack_level=3, units=("A",))
    found = refusal(book, "CP", payload)
    assert found is not None and (found.rule, found.path) == (rule, path), found
    assert found.message.endswith(f"(rule {rule}) - at `{path}`")


def test_the_book_counts_what_the_charger_holds_and_a_sequence_once() -> None:
    b = Builder()
    set_profile(b, 1, {**msgspec.json.decode(body())["csChargingProfiles"], "chargingProfileId": 5})
    book = ProfileBook()
    for seq, event in enumerate(b.events, start=1):
        book.apply(event, seq)
        book.apply(event, seq)  # a redelivery
    assert [i.profile.profile_id for i in book.model("CP").installed] == [5]
    book.model("CP").limits = Limits(max_installed=1)
    # Another id on the same connector, purpose and stack level replaces it: still one.
    assert refusal(book, "CP", body()) is None
    found = refusal(book, "CP", body(stackLevel=1))
    assert found is not None and found.rule == "max_profiles_installed"
