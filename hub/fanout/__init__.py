"""UI fan-out: per-charger event streams to UIs, REST reads from memory, a live dashboard.

A pure core (``state``, ``translate``, ``live``) folds the event stream into per-charger state
and UI messages; a thin aiohttp shell (``app``, ``broker``, ``clients``, ``auth``) serves them.
"""

from __future__ import annotations

from hub.fanout.app import create_app, running_fanout, signing_key, verifier_for

__all__ = ["create_app", "running_fanout", "signing_key", "verifier_for"]
