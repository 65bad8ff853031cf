"""Map msgspec decode failures onto each OCPP version's CALLERROR codes.

msgspec reports one error per decode with a stable English message and the JSON path of the
offending value; the kind of problem is recovered from the message's leading phrase, and each
version spells it its own way. OCPP-J 1.6 says ``FormationViolation`` and (a typo its errata
keep) ``OccurenceConstraintViolation``; 2.0.1 fixed the first but still says ``Occurence``;
2.1 spells both right. The ocpp library's exceptions module records the same three spellings.
"""

from __future__ import annotations

import re
from typing import Final, Literal, get_args

import msgspec

ErrorCode = Literal[
    "FormationViolation",
    "FormatViolation",
    "OccurenceConstraintViolation",
    "OccurrenceConstraintViolation",
    "PropertyConstraintViolation",
    "TypeConstraintViolation",
    "NotImplemented",
    "NotSupported",
    "ProtocolError",
    "SecurityError",
    "GenericError",
    "InternalError",
    "MessageTypeNotSupported",
    "RpcFrameworkError",
]

# What went wrong, before a version spells it.
Problem = Literal["format", "occurrence", "type", "property"]

_SPELLINGS: Final[dict[str, dict[Problem, ErrorCode]]] = {
    "1.6": {
        "format": "FormationViolation",
        "occurrence": "OccurenceConstraintViolation",
        "type": "TypeConstraintViolation",
        "property": "PropertyConstraintViolation",
    },
    "2.0.1": {
        "format": "FormatViolation",
        "occurrence": "OccurenceConstraintViolation",
        "type": "TypeConstraintViolation",
        "property": "PropertyConstraintViolation",
    },
    "2.1": {
        "format": "FormatViolation",
        "occurrence": "OccurrenceConstraintViolation",
        "type": "TypeConstraintViolation",
        "property": "PropertyConstraintViolation",
    },
}


# The codes each version's RPC framework defines (OCPP-J 1.6 §4.2.3; 2.0.1 and 2.1 §4.3):
# the four spelled above, the rest shared, and in 2.x MessageTypeNotSupported (an unknown
# message type number) and RpcFrameworkError (a frame that is not a valid RPC message, e.g.
# no readable message id).
_V2_ONLY: Final = frozenset({"MessageTypeNotSupported", "RpcFrameworkError"})
_SPELLED: Final = frozenset(code for codes in _SPELLINGS.values() for code in codes.values())
_SHARED: Final = frozenset(get_args(ErrorCode)) - _V2_ONLY - _SPELLED
CALLERROR_CODES: Final[dict[str, frozenset[str]]] = {
    version: _SHARED | set(codes.values()) | (_V2_ONLY if version != "1.6" else frozenset())
    for version, codes in _SPELLINGS.items()
}


def error_code(version: str, problem: Problem) -> ErrorCode:
    """How ``version`` spells ``problem`` in a CALLERROR (KeyError for an unknown version)."""
    return _SPELLINGS[version][problem]


class PayloadError(msgspec.Struct, frozen=True):
    """Why a payload was refused, ready to be sent back as a CALLERROR."""

    code: ErrorCode
    description: str


_PATH_SUFFIX: Final = re.compile(r" - at `(?P<path>\$[^`]*)`$")
# Raised by the generated __post_init__ checks, which only know the enclosing object's path.
_FIELD_NOTE: Final = re.compile(r" \(field `(?P<field>[^`]+)`\)$")

# Keyed on the leading phrase of msgspec's messages; the tests hit every rule 1.6 can trigger.
_RULES: Final[tuple[tuple[re.Pattern[str], Problem], ...]] = (
    (re.compile(r"^Object contains unknown field "), "format"),
    (re.compile(r"^Object missing required field "), "occurrence"),
    # minItems and maxItems are how the schemas spell a cardinality such as 1..* or 0..4.
    (re.compile(r"^Expected `array` of length "), "occurrence"),
    (re.compile(r"^Expected `[^`]+`, got `[^`]+`"), "type"),
    (re.compile(r"^Invalid enum value "), "property"),
    (re.compile(r"^Expected `str` of length "), "property"),
    (re.compile(r"^Expected `[^`]+` that's a multiple of "), "property"),
    (re.compile(r"^Expected `[^`]+` [<>]=? "), "property"),
    (re.compile(r"^Number out of range"), "property"),
)


def classify(error: Exception, version: str) -> PayloadError:
    """Turn an exception from a generated decoder into the CALLERROR ``version`` answers with."""
    if not isinstance(error, msgspec.ValidationError):
        # DecodeError, or UnicodeDecodeError for invalid UTF-8 inside a string.
        return PayloadError(error_code(version, "format"), f"Payload is not valid JSON: {error}")
    message, path = _split_path(str(error))
    return PayloadError(error_code(version, _problem(message, path)), f"{message} - at `{path}`")


def _split_path(text: str) -> tuple[str, str]:
    # msgspec leaves the path out for errors at the root.
    match = _PATH_SUFFIX.search(text)
    message, path = (text[: match.start()], match["path"]) if match else (text, "$")
    note = _FIELD_NOTE.search(message)
    if note:
        message, path = message[: note.start()], f"{path}.{note['field']}"
    return message, path


def _problem(message: str, path: str) -> Problem:
    if path == "$" and message.startswith("Expected `object`, got "):
        # A payload that is not an object at all is malformed; the same mismatch deeper down
        # is an ordinary type error.
        return "format"
    for pattern, problem in _RULES:
        if pattern.search(message):
            return problem
    # Unknown wording (a future msgspec): refuse the payload with the most generic code.
    return "format"
