"""The folds of the stream the command API answers from, held in memory.

A ``Book`` is one fold the API keeps for itself (the wallets and tariffs, the sites, the
charger registry) with the follower that feeds it, started and stopped with the app
(aiohttp's cleanup context): the app serves once the fold holds what was stored before it
started. A write answers only once its own event is folded (``stored``: publish, wait for
the PubAck, then for the follower to reach that sequence), so a GET right after it sees it.

``LiveFold`` is the fan-out's fold of the whole stream (``hub/fanout/live.py``), which the
API reads and never changes: each charger's profiles, its transactions and the OCPP
version of its latest connection. The fan-out's follower feeds it; the API keeps no second
copy of the charging domain.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Sequence
from typing import Final

from aiohttp import web

from hub.api.http import API, CommandApi, _store
from hub.domain.charging import Charging
from hub.follower import Apply, Follower
from hub.subjects import subject_for, subject_matches
from schemas.events import Event

# How long a write waits for its event to come back through the fold it answers from, and a
# read for the fold to take in what was stored before it asked.
FOLD_WAIT_S: Final = 5.0


class Followed:
    """A fold fed by a follower (none: not following yet)."""

    def __init__(self) -> None:
        self.follower: Follower | None = None

    async def settled(self) -> None:
        """Let the fold take in what the stream held when this was called; a fold that does
        not within FOLD_WAIT_S answers from what it has (and the follower logs it)."""
        if self.follower is not None:
            await self.follower.settled(FOLD_WAIT_S)


class Book(Followed):
    """``apply`` fed the events under ``subjects`` for the app's life (``follow``)."""

    def __init__(self, name: str, subjects: Sequence[str], apply: Apply) -> None:
        super().__init__()
        self.name = name
        self.subjects = tuple(subjects)
        self._apply = apply

    def follow(self, app: web.Application, stream: str) -> None:
        """Follow ``stream`` while the app runs; register after the command API's backbone,
        whose connection it uses."""
        app.cleanup_ctx.append(functools.partial(self._lifetime, stream))

    async def _lifetime(self, stream: str, app: web.Application) -> AsyncIterator[None]:
        connection = app[API].connection
        assert connection is not None, f"the {self.name} book must come after the API's backbone"
        async with Follower(connection, stream, self.subjects, self._apply, name=self.name) as f:
            self.follower = f
            yield

    def folds(self, event: Event) -> bool:
        subject = subject_for(event)
        return any(subject_matches(pattern, subject) for pattern in self.subjects)

    async def stored(self, api: CommandApi, event: Event) -> int:
        """Store ``event``; if the book folds it, wait until it holds it, so the answer and
        the next request see it. (An event of other subjects, a rotation's command events
        say, is never reached by this follower: waiting for it would only time out.)"""
        seq = await _store(api, event)
        if self.follower is not None and self.folds(event):
            await self.follower.reached(seq, within_s=FOLD_WAIT_S)
        return seq


class LiveFold(Followed):
    """The fan-out's charging domain, as its follower has folded the stream so far."""

    def __init__(self, charging: Charging | None = None) -> None:
        super().__init__()
        self.charging = charging or Charging()

    def ocpp_version(self, charge_point_id: str) -> str:
        """The OCPP version of the charger's latest connection ("": never seen connected)."""
        charger = self.charging.state.chargers.get(charge_point_id)
        return charger.ocpp_version if charger is not None else ""


LIVE: Final = web.AppKey("live_fold", LiveFold)

__all__ = ["FOLD_WAIT_S", "LIVE", "Book", "Followed", "LiveFold"]
