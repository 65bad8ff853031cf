"""Pieces the fan-out tests share: settings, tokens, WebSocket clients that read UI messages."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import msgspec

from hub.config import Settings
from hub.tokens import mint

SECRET = "fanout-test-secret-that-is-long-enough"


def with_fanout(settings: Settings, **changes: object) -> Settings:
    changes = {"port": 0, "jwt_secret": SECRET, **changes}
    fanout = msgspec.structs.replace(settings.fanout, **changes)
    return msgspec.structs.replace(settings, fanout=fanout)


def token(chargers: list[str] | str = "*", *, ttl_s: float = 600, secret: str = SECRET) -> str:
    scope: Any = chargers
    return mint(secret, "HS256", chargers=scope, ttl_s=ttl_s, role="viewer", subject="test")


@contextlib.asynccontextmanager
async def ui_socket(
    port: int, path: str, *, token_value: str | None = None, **kwargs: Any
) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    params = dict(kwargs.pop("params", {}))
    if token_value is not None:
        params["token"] = token_value
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(
            f"http://127.0.0.1:{port}{path}", params=params, **kwargs
        ) as ws:
            yield ws


async def next_message(ws: aiohttp.ClientWebSocketResponse, within: float = 10.0) -> Any:
    async with asyncio.timeout(within):
        message = await ws.receive()
    if message.type != aiohttp.WSMsgType.TEXT:
        raise AssertionError(f"expected a text message, got {message.type} {message.data!r}")
    return msgspec.json.decode(message.data)


async def messages_until(
    ws: aiohttp.ClientWebSocketResponse,
    done: Callable[[dict[str, Any]], bool],
    within: float = 15.0,
) -> list[dict[str, Any]]:
    """Every message up to and including the first one ``done`` accepts."""
    received: list[dict[str, Any]] = []
    async with asyncio.timeout(within):
        while True:
            message = await next_message(ws, within)
            received.append(message)
            if done(message):
                return received


async def close_of(ws: aiohttp.ClientWebSocketResponse, within: float = 10.0) -> tuple[int, str]:
    """Read until the server closes; returns its close code and reason."""
    async with asyncio.timeout(within):
        while True:
            message = await ws.receive()
            if message.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSED,
                aiohttp.WSMsgType.CLOSING,
            ):
                return ws.close_code or 0, str(message.extra or "")
