"""Property tests for the money core: the wallet ledger, the settlement rule, and the bill.

Scenarios are generated as operator and charger actions, written to a stream the way the
gateway and the admin tools store them (:mod:`tests.unit.supervisor_stream`), and folded by
the pure supervisor; the checks read what the stream holds afterwards, as any later fold
of it (the ledger projection, a restarted supervisor) would.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.domain import energy
from hub.domain.policy import Policy
from hub.domain.tariffs import Point, Tariff, session_cost
from hub.domain.wallets import PLACES, Wallets, money, settle
from hub.supervisor.core import Intent, Supervisor
from schemas.events import (
    Event,
    TariffBand,
    TariffSet,
    WalletAdjusted,
    WalletConfigured,
    WalletCredited,
    WalletHeld,
    WalletSettled,
    _DerivedEvent,
)
from tests.unit.supervisor_stream import T0, Stream

DAY_MS = 86_400_000
TAGS = ("ANNA", "BEN", "CARL")
CHARGERS = ("CP-1", "CP-2", "CP-3")
# Stale sessions are closed by the hub itself, so some settle without a StopTransaction.
POLICY = Policy(stale_after_s=600, actions={"stale": "close_session"})


def scaled(places: int, low: int, high: int) -> st.SearchStrategy[Decimal]:
    """Decimals with exactly ``places`` decimal places, ``low`` to ``high`` in those units."""
    return st.integers(low, high).map(lambda units: Decimal(units).scaleb(-places))


def iso_ms(ms: int) -> str:
    # Exact to the millisecond: no float in between.
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


prices = scaled(4, 0, 10_000)  # 0 to 1 per kWh or minute
bands = st.builds(
    TariffBand,
    start=st.integers(0, 24 * 60).map(hhmm),
    end=st.integers(0, 24 * 60).map(hhmm),
    per_kwh=prices.map(str),
    per_minute=prices.map(str),
)
tariff_fields = st.fixed_dictionaries(
    {
        "per_kwh": prices.map(str),
        "per_minute": prices.map(str),
        "session_fee": scaled(2, 0, 500).map(str),
        "bands": st.one_of(st.just(()), st.lists(bands, min_size=1, max_size=3).map(tuple)),
        "idle_per_minute": prices.map(str),
        "idle_grace_minutes": st.integers(0, 30),
    }
)


def tariff_event(event_id: str, at: int, fields: dict[str, Any]) -> TariffSet:
    return TariffSet(id=event_id, received_at=at, actor="op", tariff_id=event_id, **fields)


# -- 1. the ledger ---------------------------------------------------------------------------

tags = st.sampled_from(TAGS)
seconds = st.integers(1, 300)
hold_amounts = st.one_of(st.just(""), scaled(2, 0, 5_000).map(str))  # empty: the whole balance
topups = scaled(6, 1, 200_000_000).map(str)
operator_actions = st.one_of(
    st.tuples(st.just("configure"), tags, hold_amounts),
    st.tuples(st.just("topup"), tags, topups),
    st.tuples(
        st.just("adjustment"),
        tags,
        scaled(6, -100_000_000, 100_000_000).filter(bool).map(str),
    ),
    st.tuples(st.just("wait"), st.integers(1, 900)),
    st.tuples(st.just("tariff"), tariff_fields),
)
charger_actions = st.one_of(
    st.tuples(st.just("start"), tags, seconds),
    # Which of the running sessions, counted round the chargers that have one.
    st.tuples(st.just("meter"), st.integers(0, 2), st.integers(0, 20_000), seconds),
    st.tuples(st.just("stop"), st.integers(0, 2), st.integers(0, 5_000), seconds),
)
# Most tags start with a wallet and some money in it, so most sessions are prepaid.
wallets = st.lists(
    st.tuples(tags, hold_amounts, topups), min_size=1, max_size=3, unique_by=lambda w: w[0]
)
# Charger actions are drawn twice as often as operator ones, so sessions run and overlap.
operations = st.integers(0, 2).flatmap(lambda i: operator_actions if i == 0 else charger_actions)


def opening(drawn: list[tuple[str, str, str]]) -> list[tuple[Any, ...]]:
    return [
        op
        for tag, hold, amount in drawn
        for op in (("configure", tag, hold), ("topup", tag, amount))
    ]


scenarios = st.builds(
    lambda setup, ops: [*opening(setup), *ops],
    wallets,
    st.lists(operations, min_size=10, max_size=50),
)


class Scenario:
    """Turns generated operations into a stream; sessions are one per charger at a time."""

    def __init__(self, policy: Policy = POLICY) -> None:
        self.stream = Stream(policy)
        self.at = T0
        self.tx = 0
        self.open: dict[str, tuple[int, int]] = {}  # charger -> (transaction id, register Wh)
        self.ids = 0

    def admin(self, event: type[WalletConfigured] | type[WalletCredited], **fields: Any) -> None:
        self.ids += 1
        self.stream.add(event(id=f"a{self.ids}", received_at=self.at, actor="op", **fields))

    def run(self, ops: list[tuple[Any, ...]]) -> Stream:
        stream = self.stream
        stream.add(tariff_event("t0", self.at, {"per_kwh": "0.30", "per_minute": "0.01"}))
        for op in ops:
            match op:
                case ("configure", tag, hold):
                    self.admin(WalletConfigured, id_tag=tag, hold_amount=hold)
                case ("topup" | "adjustment" as kind, tag, amount):
                    self.admin(WalletCredited, id_tag=tag, amount=amount, kind=kind)
                case ("start", tag, wait):
                    free = [cp for cp in CHARGERS if cp not in self.open]
                    if not free:
                        continue
                    cp = free[0]
                    self.at += wait * 1000
                    self.tx += 1
                    register = 1_000 * self.tx
                    self.open[cp] = (self.tx, register)
                    stream.start(cp, 1, self.tx, self.at, id_tag=tag, meter=register)
                case ("meter", pick, wh, wait):
                    if not self.open:
                        continue
                    cp = self.running(pick)
                    self.at += wait * 1000
                    tx, register = self.open[cp]
                    self.open[cp] = (tx, register + wh)
                    stream.meter(cp, 1, tx, register + wh, self.at)
                case ("stop", pick, wh, wait):
                    if self.open:
                        self.stop(self.running(pick), wh, wait)
                case ("wait", wait):
                    self.at += wait * 1000
                    stream.tick(self.at)
                case ("tariff", fields):
                    self.ids += 1
                    stream.add(tariff_event(f"t{self.ids}", self.at, fields))
        for cp in list(self.open):
            self.stop(cp, 0, 1)
        return stream

    def running(self, pick: int) -> str:
        return sorted(self.open)[pick % len(self.open)]

    def stop(self, cp: str, wh: int, wait: int) -> None:
        self.at += wait * 1000
        tx, register = self.open.pop(cp)
        self.stream.stop(cp, tx, register + wh, self.at)


def by_transaction(
    events: list[Event], kind: type[WalletHeld] | type[WalletSettled]
) -> dict[tuple[str, int], Any]:
    return {(e.charge_point_id, e.transaction_id): e for e in events if isinstance(e, kind)}


@settings(max_examples=120, deadline=None)
@given(ops=scenarios)
def test_the_ledger_is_the_sum_of_its_entries_and_settles_to_credits_minus_costs(
    ops: list[tuple[Any, ...]],
) -> None:
    stream = Scenario().run(ops)
    events = stream.events

    # Replayed from the stored events alone, every balance moves by its entries and no more.
    replay = Wallets()
    running: dict[str, Decimal] = defaultdict(lambda: Decimal(0))
    for event in events:
        before = {wallet.id_tag: wallet.balance for wallet in replay.wallets.values()}
        available = before.get(getattr(event, "id_tag", ""), Decimal(0))
        entries = replay.apply(event)
        moved: dict[str, Decimal] = defaultdict(lambda: Decimal(0))
        for entry in entries:
            assert entry.event_id == event.id
            assert entry.id_tag == getattr(event, "id_tag", None)
            running[entry.id_tag] += entry.amount
            assert entry.balance == running[entry.id_tag]
            moved[entry.id_tag] += entry.amount
            if entry.kind == "refund":
                assert entry.amount > 0
            if entry.kind in ("hold", "shortfall"):
                assert entry.amount <= 0
        for wallet in replay.wallets.values():
            assert wallet.balance == before.get(wallet.id_tag, Decimal(0)) + moved[wallet.id_tag]
        if isinstance(event, WalletHeld):
            # A hold never sets aside more than the wallet had, nor a negative amount.
            assert Decimal(0) <= money(event.amount) <= max(Decimal(0), available)

    for tag in TAGS:
        found = replay.get(tag)
        replayed = found.balance if found is not None else Decimal(0)
        assert replayed == running[tag]
        # The supervisor, which applied its own holds and settlements as it derived them and
        # then saw them come back from the stream, counted each exactly once.
        live = stream.supervisor.wallets.get(tag)
        assert (live.balance if live else Decimal(0)) == replayed

    held = by_transaction(events, WalletHeld)
    settled = by_transaction(events, WalletSettled)
    assert held.keys() == settled.keys(), "every prepaid session was settled once"
    for key, settlement in settled.items():
        assert settlement.held == held[key].amount
        assert settlement.id_tag == held[key].id_tag
    credits: dict[str, Decimal] = defaultdict(lambda: Decimal(0))
    costs: dict[str, Decimal] = defaultdict(lambda: Decimal(0))
    for event in events:
        if isinstance(event, WalletCredited):
            credits[event.id_tag] += money(event.amount)
        elif isinstance(event, WalletSettled):
            costs[event.id_tag] += money(event.cost)
        elif isinstance(event, WalletAdjusted):
            # The bill moved after the settlement (a reading after a close, say).
            costs[event.id_tag] += money(event.amount)
    for tag in TAGS:
        assert running[tag] == credits[tag] - costs[tag]


# -- 2. settlement ---------------------------------------------------------------------------


def check_settlement(held: Decimal, cost: Decimal, rate: Decimal) -> None:
    result = settle(held, cost, rate)
    assert result.refund >= 0
    assert result.shortfall >= 0
    assert not (result.refund and result.shortfall)
    assert held - result.refund + result.shortfall == cost
    assert result.platform_fee + result.operator_share == cost
    assert result.platform_fee == (cost * rate).quantize(PLACES, ROUND_HALF_EVEN)


@settings(max_examples=500, deadline=None)
@given(
    held=scaled(4, 0, 10**12),
    cost=scaled(4, 0, 10**12),
    rate=st.one_of(st.sampled_from(["0", "0.1", "0.10", "0.125", "1"]), scaled(4, 0, 10_000)),
)
def test_a_settlement_refunds_or_takes_the_difference_and_splits_the_cost(
    held: Decimal, cost: Decimal, rate: Decimal | str
) -> None:
    check_settlement(held, cost, Decimal(rate))


@settings(max_examples=60, deadline=None)
@given(ops=scenarios, rate=scaled(4, 0, 10_000))
def test_every_settlement_in_a_stream_obeys_the_rule(
    ops: list[tuple[Any, ...]], rate: Decimal
) -> None:
    policy = msgspec.structs.replace(POLICY, platform_fee_rate=str(rate))
    for event in Scenario(policy).run(ops).events:
        if isinstance(event, WalletSettled):
            assert Decimal(event.fee_rate) == rate
            check_settlement(money(event.held), money(event.cost), rate)
            expected = settle(money(event.held), money(event.cost), rate)
            assert (
                money(event.refund),
                money(event.shortfall),
                money(event.platform_fee),
                money(event.operator_share),
            ) == (
                expected.refund,
                expected.shortfall,
                expected.platform_fee,
                expected.operator_share,
            )


# -- 3. the bill does not depend on how meter values arrive ---------------------------------

START_MS = T0 + 60_000


@st.composite
def sessions(draw: st.DrawFn) -> tuple[Point, list[Point], Point]:
    """A start reading, register readings at strictly increasing times with a register that
    never falls (often flat, so there is idle time), and the stop reading."""
    start_ms = START_MS + draw(st.integers(0, DAY_MS - 1))
    meter_start = draw(st.integers(0, 100_000))
    at, register = start_ms, float(meter_start)
    readings: list[Point] = []
    for _ in range(draw(st.integers(0, 12))):
        at += draw(st.integers(0 if not readings else 1, 3 * 3_600_000))
        rise = draw(st.one_of(st.just(Decimal(0)), scaled(0, 1, 30_000), scaled(3, 1, 30_000_000)))
        register = float(Decimal(repr(register)) + rise)
        readings.append((at, register))
    stop_ms = at + draw(st.integers(0, 3_600_000))
    meter_stop = math.ceil(register) + draw(st.one_of(st.just(0), st.integers(0, 5_000)))
    return (start_ms, meter_start), readings, (stop_ms, float(meter_stop))


def bill(tariff: Tariff, start: Point, readings: list[Point], stop: Point) -> Decimal:
    return session_cost(tariff, energy.curve(readings, start, stop)).total


@settings(max_examples=200, deadline=None)
@given(fields=tariff_fields, session=sessions(), data=st.data())
def test_the_bill_of_a_curve_does_not_depend_on_the_order_of_its_readings(
    fields: dict[str, Any], session: tuple[Point, list[Point], Point], data: st.DataObject
) -> None:
    tariff = Tariff.from_event(tariff_event("t", T0, fields))
    start, readings, stop = session
    shuffled = data.draw(st.permutations(readings))
    assert bill(tariff, start, shuffled, stop) == bill(tariff, start, readings, stop)


# Other values a charger puts next to the register in one meterValue; none of them is it.
DISTRACTORS: tuple[dict[str, str], ...] = (
    {"measurand": "Power.Active.Import", "unit": "W", "value": "7200.5"},
    {"measurand": "Voltage", "phase": "L1-N", "unit": "V", "value": "229.8"},
    {"measurand": "Energy.Active.Import.Register", "phase": "L1", "value": "999999"},
    {"measurand": "Energy.Active.Export.Register", "value": "12"},
    {"measurand": "Energy.Active.Import.Interval", "value": "250"},
    {"measurand": "SoC", "location": "EV", "unit": "Percent", "value": "55"},
)


def register(wh: float, explicit: bool) -> dict[str, str]:
    value = {"value": repr(wh)}
    if explicit:
        value |= {"measurand": "Energy.Active.Import.Register", "unit": "Wh"}
    return value


# One meterValue entry, as the payload carries it.
Entry = dict[str, Any]


@st.composite
def deliveries(draw: st.DrawFn, readings: list[Point]) -> tuple[list[list[Entry]], list[Entry]]:
    """How a charger might deliver ``readings``: meterValue entries (with other measurands
    around the register) grouped into messages sent in any order, some repeated (a
    retransmission), and some left for the StopTransaction's transactionData."""
    entries: list[Entry] = []
    for at, wh in readings:
        extra = draw(st.lists(st.sampled_from(DISTRACTORS), max_size=3, unique_by=str))
        sampled = [*extra, register(wh, draw(st.booleans()))]
        entries.append({"timestamp": iso_ms(at), "sampledValue": draw(st.permutations(sampled))})
    entries = draw(st.permutations(entries))
    in_stop = draw(st.integers(0, len(entries)))
    sent, tail = entries[: len(entries) - in_stop], entries[len(entries) - in_stop :]
    messages: list[list[Entry]] = []
    rest = list(sent)
    while rest:
        size = draw(st.integers(1, len(rest)))
        messages.append(rest[:size])
        rest = rest[size:]
    retransmitted = draw(st.booleans())
    if messages and retransmitted:
        messages.append(draw(st.sampled_from(messages)))
    return draw(st.permutations(messages)), tail


def supervised_bill(
    fields: dict[str, Any],
    start: Point,
    stop: Point,
    messages: list[list[Entry]],
    tail: list[Entry],
) -> Decimal:
    """The cost a prepaid session settles at, the session's messages arriving as given."""
    stream = Stream()
    stream.add(tariff_event("t", T0, fields))
    stream.add(
        WalletConfigured(id="w", received_at=T0, actor="op", id_tag="TAG", hold_amount="100")
    )
    stream.add(WalletCredited(id="c", received_at=T0, actor="op", id_tag="TAG", amount="1000"))
    cp, tx = "CP-1", 42
    unique_id = "start-1"
    request = {
        "connectorId": 1,
        "idTag": "TAG",
        "meterStart": int(start[1]),
        "timestamp": iso_ms(start[0]),
    }
    stream.frame(cp, "in", "CALL", unique_id, "StartTransaction", request, START_MS)
    answer = {"transactionId": tx, "idTagInfo": {"status": "Accepted"}}
    stream.frame(cp, "out", "CALLRESULT", unique_id, "StartTransaction", answer, START_MS)
    at = START_MS
    for values in messages:
        at += 1_000
        payload = {"connectorId": 1, "transactionId": tx, "meterValue": values}
        stream.call(cp, "MeterValues", payload, at)
    stop_request: dict[str, Any] = {
        "transactionId": tx,
        "meterStop": int(stop[1]),
        "timestamp": iso_ms(stop[0]),
        "reason": "Local",
    }
    if tail:
        stop_request["transactionData"] = tail
    stream.call(cp, "StopTransaction", stop_request, at + 1_000)
    (settled,) = [e for e in stream.events if isinstance(e, WalletSettled)]
    return money(settled.cost)


@settings(max_examples=150, deadline=None)
@given(fields=tariff_fields, session=sessions(), data=st.data())
def test_a_settled_bill_does_not_depend_on_how_meter_values_are_batched_or_ordered(
    fields: dict[str, Any], session: tuple[Point, list[Point], Point], data: st.DataObject
) -> None:
    start, readings, stop = session
    expected = bill(Tariff.from_event(tariff_event("t", T0, fields)), start, readings, stop)
    one_by_one = [
        [{"timestamp": iso_ms(at), "sampledValue": [register(wh, False)]}] for at, wh in readings
    ]
    assert supervised_bill(fields, start, stop, one_by_one, []) == expected
    messages, tail = data.draw(deliveries(readings))
    assert supervised_bill(fields, start, stop, messages, tail) == expected


# -- 4. a fold of the stored stream is deterministic, and finds its own outbox stored -------


def fold(events: list[Event], upto: int | None = None) -> tuple[Supervisor, list[Intent]]:
    supervisor = Supervisor(POLICY)
    intents: list[Intent] = []
    for seq, event in enumerate(events[:upto], 1):
        intents.extend(supervisor.apply(seq, event))
    return supervisor, intents


@settings(max_examples=100, deadline=None)
@given(ops=scenarios, data=st.data())
def test_refolding_the_stored_stream_derives_the_same_intents_all_already_stored(
    ops: list[tuple[Any, ...]], data: st.DataObject
) -> None:
    stream = Scenario().run(ops)
    events = stream.events
    first, intents = fold(events)
    second, again = fold(events)
    assert intents == again == stream.intents
    assert first.unconfirmed == {} == second.unconfirmed
    assert first.commands_due == second.commands_due == stream.supervisor.commands_due
    for tag in TAGS:
        balances = {
            wallet.balance if (wallet := s.wallets.get(tag)) is not None else None
            for s in (first, second, stream.supervisor)
        }
        assert len(balances) == 1

    # A restart that stored only a prefix: what is unconfirmed is exactly what the stream
    # does not show yet, and folding the rest confirms all of it without deriving it twice.
    # Cutting just before a derived event, or before its cause, is where it goes wrong.
    edges = [k - d for k, e in enumerate(events) if isinstance(e, _DerivedEvent) for d in (0, 1)]
    upto = data.draw(st.one_of(st.integers(0, len(events)), st.sampled_from(edges or [0])))
    restarted, _ = fold(events, upto)
    missing = {
        event.id: event
        for event in events[upto:]
        if isinstance(event, _DerivedEvent) and event.cause_seq <= upto
    }
    assert {id_: intent.event for id_, intent in restarted.unconfirmed.items()} == missing
    later: list[Intent] = []
    for seq, event in enumerate(events[upto:], upto + 1):
        later.extend(restarted.apply(seq, event))
    assert restarted.unconfirmed == {}
    assert [i.event.id for i in later] == [
        i.event.id for i in stream.intents if i.event.cause_seq > upto
    ]
