"""Map msgspec decode failures onto OCPP 1.6 CALLERROR codes.

msgspec reports one error per decode with a stable English message and the JSON path of the
offending value; the code is recovered from the message's leading phrase. Spellings follow the
OCPP-J 1.6 specification, including its "Occurence".
"""

from __future__ import annotations

import re
from typing import Final, Literal

import msgspec

ErrorCode = Literal[
    "FormationViolation",
    "OccurenceConstraintViolation",
    "PropertyConstraintViolation",
    "TypeConstraintViolation",
    "NotImplemented",
    "NotSupported",
]


class PayloadError(msgspec.Struct, frozen=True):
    """Why a payload was refused, ready to be sent back as a CALLERROR."""

    code: ErrorCode
    description: str


_PATH_SUFFIX: Final = re.compile(r" - at `(?P<path>\$[^`]*)`$")
# Raised by the generated __post_init__ checks, which only know the enclosing object's path.
_FIELD_NOTE: Final = re.compile(r" \(field `(?P<field>[^`]+)`\)$")

# Keyed on the leading phrase of msgspec's messages; the tests hit every rule 1.6 can trigger.
_RULES: Final[tuple[tuple[re.Pattern[str], ErrorCode], ...]] = (
    (re.compile(r"^Object contains unknown field "), "FormationViolation"),
    (re.compile(r"^Object missing required field "), "OccurenceConstraintViolation"),
    # minItems is how the schemas spell a 1..* cardinality.
    (re.compile(r"^Expected `array` of length "), "OccurenceConstraintViolation"),
    (re.compile(r"^Expected `[^`]+`, got `[^`]+`"), "TypeConstraintViolation"),
    (re.compile(r"^Invalid enum value "), "PropertyConstraintViolation"),
    (re.compile(r"^Expected `str` of length "), "PropertyConstraintViolation"),
    (re.compile(r"^Expected `[^`]+` that's a multiple of "), "PropertyConstraintViolation"),
    (re.compile(r"^Expected `[^`]+` [<>]=? "), "PropertyConstraintViolation"),
    (re.compile(r"^Number out of range"), "PropertyConstraintViolation"),
)


def classify(error: Exception) -> PayloadError:
    """Turn an exception from a generated decoder into the CALLERROR to answer with."""
    if not isinstance(error, msgspec.ValidationError):
        # DecodeError, or UnicodeDecodeError for invalid UTF-8 inside a string.
        return PayloadError("FormationViolation", f"Payload is not valid JSON: {error}")
    message, path = _split_path(str(error))
    return PayloadError(_code_for(message, path), f"{message} - at `{path}`")


def _split_path(text: str) -> tuple[str, str]:
    # msgspec leaves the path out for errors at the root.
    match = _PATH_SUFFIX.search(text)
    message, path = (text[: match.start()], match["path"]) if match else (text, "$")
    note = _FIELD_NOTE.search(message)
    if note:
        message, path = message[: note.start()], f"{path}.{note['field']}"
    return message, path


def _code_for(message: str, path: str) -> ErrorCode:
    if path == "$" and message.startswith("Expected `object`, got "):
        # A payload that is not an object at all is malformed; the same mismatch deeper down
        # is an ordinary type error.
        return "FormationViolation"
    for pattern, code in _RULES:
        if pattern.search(message):
            return code
    # Unknown wording (a future msgspec): refuse the payload with the most generic code.
    return "FormationViolation"
