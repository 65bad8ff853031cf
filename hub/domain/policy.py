"""The supervisor's parameters: detector thresholds, the fee split, and what to do about
each kind of anomaly. Configuration, not state: the same events under the same policy give
the same derived events."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Final, get_args

import msgspec

from schemas.events import AnomalyKind, IntegrityActionKind

ANOMALY_KINDS: Final[tuple[AnomalyKind, ...]] = get_args(AnomalyKind)
ACTION_KINDS: Final[tuple[IntegrityActionKind, ...]] = (
    "trigger_status",
    "remote_stop",
    "close_session",
)

# Asking a charger for its status is harmless and often clears the doubt by itself.
DEFAULT_ACTIONS: Final[dict[AnomalyKind, IntegrityActionKind]] = {
    "orphaned": "trigger_status",
    "ghost": "trigger_status",
}


class Policy(msgspec.Struct, frozen=True, kw_only=True):
    # A connector Charging/SuspendedEV/SuspendedEVSE with no open transaction this long.
    orphaned_after_s: float = 60.0
    # An open transaction whose connector is Available or Faulted this long...
    ghost_after_s: float = 120.0
    # ...or whose charger has been disconnected this long (it may charge offline meanwhile).
    ghost_offline_after_s: float = 900.0
    # An open transaction without meter values this long.
    stale_after_s: float = 900.0
    # Energy between two register readings implying more power than this is impossible.
    max_power_w: float = 400_000.0
    # The platform's share of a prepaid session's cost; the operator gets the rest.
    platform_fee_rate: str = "0.10"
    # A charger's certificate this close to its end (days) is an alert; past it, another.
    certificate_warning_days: float = 30.0
    # Site load management (hub/domain/load.py): whether the allocator acts (only ever on
    # connectors assigned to a site), the stack level of its profiles, and when it tells a
    # charger of a higher limit: moved by this many A, this long after its last word.
    load_management: bool = True
    load_stack_level: int = 1
    load_hysteresis_a: float = 1.0
    load_min_interval_s: float = 10.0
    # ...and how long after a charger confirmed a cut the room it frees is given to others.
    load_reaction_allowance_s: float = 2.0
    actions: dict[AnomalyKind, IntegrityActionKind] = msgspec.field(
        default_factory=lambda: dict(DEFAULT_ACTIONS)
    )


def parse_actions(text: str) -> dict[AnomalyKind, IntegrityActionKind]:
    """``ghost=close_session,orphaned=trigger_status`` (empty: no actions); ``ValueError``
    names the part it cannot read."""
    actions: dict[AnomalyKind, IntegrityActionKind] = {}
    for part in filter(None, (item.strip() for item in text.split(","))):
        kind, sep, action = part.partition("=")
        if not sep or kind not in ANOMALY_KINDS or action not in ACTION_KINDS:
            raise ValueError(
                f"integrity action {part!r}: expected <kind>=<action> with kind one of "
                f"{', '.join(ANOMALY_KINDS)} and action one of {', '.join(ACTION_KINDS)}"
            )
        actions[kind] = action
    return actions


def format_actions(actions: dict[AnomalyKind, IntegrityActionKind]) -> str:
    return ",".join(f"{kind}={action}" for kind, action in actions.items())


def parse_fee_rate(text: str) -> Decimal:
    """The platform's share as a fraction from 0 to 1; ``ValueError`` says what is wrong."""
    try:
        rate = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"platform fee rate {text!r} is not a decimal number") from None
    if not rate.is_finite() or not 0 <= rate <= 1:
        raise ValueError(f"platform fee rate {text!r} must be from 0 to 1 (0.10 is 10 %)")
    return rate
