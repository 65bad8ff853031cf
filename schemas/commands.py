"""Server-initiated OCPP commands as they travel over NATS, from whoever asks (the REST API,
``hub cmd``) to the gateway that holds the charger's connection, and back."""

from __future__ import annotations

from typing import Final, Literal

import msgspec

COMMAND_SUBJECT_PREFIX: Final = "ctl.cmd"
MAX_COMMAND_ID_LENGTH: Final = 36  # the command id is the CALL's OCPP-J unique id


class CommandRequest(msgspec.Struct, frozen=True, kw_only=True):
    command_id: str
    action: str
    payload: msgspec.Raw
    timeout_s: float = 30.0
    # The OCPP versions the command is for (the API endpoint's); a charger connected with
    # another is not sent it (``wrong_version``). Empty: whatever version the action is in.
    versions: tuple[str, ...] = ()


# answered: a CALLRESULT came back (its payload says Accepted, Rejected, ...).
# callerror: the charger answered with a CALLERROR.
# timeout: no answer within timeout_s.
# offline: no gateway holds the charger.
# busy: too many commands already queued for this charger.
# invalid: the request itself was refused (unknown action, payload against the schema).
# invalid_answer: the charger's CALLRESULT broke the schema; it is recorded as rejected.
# wrong_version: the charger is connected with an OCPP version the command is not for.
CommandStatus = Literal[
    "answered",
    "callerror",
    "timeout",
    "offline",
    "busy",
    "invalid",
    "invalid_answer",
    "wrong_version",
]


class CommandReply(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    command_id: str
    status: CommandStatus
    payload: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b"{}"))
    error_code: str = ""
    error_description: str = ""


request_encoder: Final = msgspec.json.Encoder()
request_decoder: Final = msgspec.json.Decoder(CommandRequest)
reply_decoder: Final = msgspec.json.Decoder(CommandReply)
