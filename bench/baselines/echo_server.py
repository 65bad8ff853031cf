"""Baseline 2, the ceiling: decode each CALL, answer a canned minimal CALLRESULT.

No OCPP logic, no validation, no persistence: what is left is websockets
framing plus one JSON decode per message, i.e. the fastest a Python
`websockets` server can possibly turn a CALL around.
"""

from __future__ import annotations

from typing import Any

import msgspec
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from bench.baselines import serve_until_signalled

_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode

_NOW = "2025-01-01T00:00:00.000Z"
_ACCEPTED_TAG = {"status": "Accepted"}
# Schema-valid answers, encoded once: the simulator reads transactionId, and
# anything less than a valid answer would not be a fair ceiling.
_ANSWERS: dict[str, bytes] = {
    action: _encode(payload)
    for action, payload in {
        "BootNotification": {"currentTime": _NOW, "interval": 300, "status": "Accepted"},
        "Heartbeat": {"currentTime": _NOW},
        "Authorize": {"idTagInfo": _ACCEPTED_TAG},
        "StartTransaction": {"transactionId": 1, "idTagInfo": _ACCEPTED_TAG},
        "StopTransaction": {"idTagInfo": _ACCEPTED_TAG},
        "DataTransfer": {"status": "Accepted"},
    }.items()
}
_EMPTY = b"{}"


async def handle(ws: ServerConnection) -> None:
    try:
        while True:
            raw = await ws.recv(decode=False)
            try:
                msg: Any = _decode(raw)
            except msgspec.DecodeError:
                continue
            if type(msg) is list and len(msg) >= 4 and msg[0] == 2:
                body = _ANSWERS.get(msg[2], _EMPTY) if isinstance(msg[2], str) else _EMPTY
                await ws.send(b"[3," + _encode(msg[1]) + b"," + body + b"]", text=True)
    except ConnectionClosed:
        pass


def main() -> int:
    return serve_until_signalled(handle, "raw websockets OCPP echo (benchmark ceiling)")


if __name__ == "__main__":
    raise SystemExit(main())
