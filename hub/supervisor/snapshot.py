"""The supervisor's state on disk, so a restart folds the stream from there, not from its
first event.

A snapshot is written after an event is fully applied and names its sequence; the fold
goes on from the next one. The outbox travels with it, so what was derived but not yet
seen in the stream is still published (or found stored) after the restart. A snapshot of
another format, or an unreadable one, is ignored: the fold starts from the stream's start.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Final

import msgspec

from hub.domain.charging import STATE_VERSION, Charging, State
from hub.domain.facts import CertificateKnown
from hub.domain.load import LoadManager, LoadState
from hub.domain.policy import Policy
from hub.supervisor.core import Command, Intent, Supervisor
from hub.supervisor.model import OpenAnomaly, Transaction

# Bump when the core's state changes shape or meaning.
SNAPSHOT_VERSION: Final = 3


class Snapshot(msgspec.Struct, kw_only=True):
    version: int = SNAPSHOT_VERSION
    now: int
    last_seq: int
    domain: State
    transactions: dict[str, Transaction]
    anomalies: dict[str, OpenAnomaly]
    unconfirmed: dict[str, Intent]
    commands_due: dict[str, Command]
    certificates: dict[str, CertificateKnown] = {}
    # Absent from snapshots made before settlement adjustments: none were due then.
    moved_bills: dict[str, int] = {}
    # Absent from snapshots made before failover: a restart found the requests it made sent.
    unsent: dict[str, Command] = {}
    load: LoadState = msgspec.field(default_factory=LoadState)


_encoder: Final = msgspec.json.Encoder(decimal_format="string")
_decoder: Final = msgspec.json.Decoder(Snapshot)


def encode(supervisor: Supervisor) -> bytes:
    return _encoder.encode(
        Snapshot(
            now=supervisor.now,
            last_seq=supervisor.last_seq,
            domain=supervisor.charging.state,
            transactions=supervisor.transactions,
            anomalies=supervisor.anomalies,
            unconfirmed=supervisor.unconfirmed,
            commands_due=supervisor.commands_due,
            certificates=supervisor.certificates,
            moved_bills=supervisor.moved_bills,
            unsent=supervisor.unsent,
            load=supervisor.load.state,
        )
    )


def decode(data: bytes, policy: Policy) -> Supervisor | None:
    try:
        snapshot = _decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError, ArithmeticError):
        return None
    if snapshot.version != SNAPSHOT_VERSION or snapshot.domain.version != STATE_VERSION:
        return None
    supervisor = Supervisor(policy)
    supervisor.now, supervisor.last_seq = snapshot.now, snapshot.last_seq
    supervisor.charging = Charging(snapshot.domain)
    supervisor.transactions = snapshot.transactions
    supervisor.anomalies = snapshot.anomalies
    supervisor.unconfirmed = snapshot.unconfirmed
    supervisor.commands_due = snapshot.commands_due
    supervisor.certificates = snapshot.certificates
    supervisor.moved_bills = snapshot.moved_bills
    supervisor.unsent = snapshot.unsent
    supervisor.load = LoadManager(supervisor.load.config, snapshot.load)
    return supervisor


def write(path: Path, data: bytes) -> None:
    """Atomically: a crash leaves the previous snapshot or this one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    with open(partial, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(partial, path)


def read(path: Path) -> bytes | None:
    with contextlib.suppress(FileNotFoundError):
        return path.read_bytes()
    return None


__all__ = ["Snapshot", "decode", "encode", "read", "write"]
