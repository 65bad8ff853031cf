"""Validate OCPP payloads against generated msgspec Structs instead of jsonschema.

``validate_call(version, action, payload)`` and ``validate_result(...)`` decode the raw JSON
payload of a CALL / CALLRESULT into a frozen Struct, or return a ``PayloadError`` carrying the
CALLERROR code to answer with. They accept exactly what the ocpp library's jsonschema validation
accepts (see docs/validation.md and tests/test_ocpp_validation.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final

import msgspec

from schemas.ocpp import v16, v21, v201
from schemas.ocpp.errors import CALLERROR_CODES, ErrorCode, PayloadError, classify

__all__ = [
    "CALLERROR_CODES",
    "ErrorCode",
    "PayloadError",
    "known_actions",
    "validate_call",
    "validate_result",
]

Decoders = Mapping[str, msgspec.json.Decoder[Any]]

# A version slots in by generating its module and adding it here (and its spellings in errors.py).
_CALL_DECODERS: Final[Mapping[str, Decoders]] = {
    "1.6": v16.REQUEST_DECODERS,
    "2.0.1": v201.REQUEST_DECODERS,
    "2.1": v21.REQUEST_DECODERS,
}
_RESULT_DECODERS: Final[Mapping[str, Decoders]] = {
    "1.6": v16.RESPONSE_DECODERS,
    "2.0.1": v201.RESPONSE_DECODERS,
    "2.1": v21.RESPONSE_DECODERS,
}

_LONE_SURROGATE: Final = re.compile("[\ud800-\udfff]")

# A frame's payload element arrives as msgspec.Raw, which decoders read without a copy.
Payload = bytes | str | msgspec.Raw


def validate_call(version: str, action: str, payload: Payload) -> msgspec.Struct | PayloadError:
    """Decode the payload of a CALL (a request) for ``action``; 2.1's SEND too."""
    return _validate(_CALL_DECODERS, version, action, payload)


def validate_result(version: str, action: str, payload: Payload) -> msgspec.Struct | PayloadError:
    """Decode the payload of a CALLRESULT answering a CALL for ``action``."""
    return _validate(_RESULT_DECODERS, version, action, payload)


def known_actions(version: str) -> frozenset[str]:
    """Actions that have a request schema in ``version`` (empty for unknown versions)."""
    return frozenset(_CALL_DECODERS.get(version, {}))


def _validate(
    registry: Mapping[str, Decoders], version: str, action: str, payload: Payload
) -> msgspec.Struct | PayloadError:
    decoders = registry.get(version)
    if decoders is None:
        return PayloadError("NotSupported", f"OCPP version {version!r} is not supported")
    decoder = decoders.get(action)
    if decoder is None:
        return PayloadError("NotImplemented", f"Unknown action {action!r} for OCPP {version}")
    try:
        result: msgspec.Struct = decoder.decode(payload)
    except (
        msgspec.ValidationError,
        msgspec.DecodeError,
        UnicodeDecodeError,
        RecursionError,
    ) as error:
        return _retry_as_python_reads_it(decoder, payload, error, version)
    return result


def _retry_as_python_reads_it(
    decoder: msgspec.json.Decoder[Any], payload: Payload, error: Exception, version: str
) -> msgspec.Struct | PayloadError:
    """Second opinion on a refused payload, on the document as ``json.loads`` sees it.

    The ocpp library parses with ``json.loads``, which is laxer than msgspec in a few corners:
    it keeps the last of duplicate keys (msgspec validates every occurrence), accepts lone
    surrogate escapes, and NaN/Infinity. Re-encoding its result and decoding again makes us
    judge the same document jsonschema judges. Only refusals pay for this.
    """
    canonical = _canonical_json(payload)
    if isinstance(canonical, RecursionError) and isinstance(error, msgspec.ValidationError):
        # Deeper than Python reads back (the parsers' limits depend on the caller's stack):
        # msgspec read far enough to refuse it precisely.
        return classify(error, version)
    if isinstance(canonical, Exception):
        # Not JSON at all, even if msgspec happened to trip over something else first.
        return classify(canonical, version)
    try:
        result: msgspec.Struct = decoder.decode(canonical)
    except msgspec.ValidationError as retry_error:
        # msgspec's own complaint is the more precise one when it had one (e.g. a number out of
        # float range, which the retry only sees as the null that replaced infinity).
        return classify(
            error if isinstance(error, msgspec.ValidationError) else retry_error, version
        )
    return result


def _canonical_json(payload: Payload) -> bytes | ValueError | RecursionError:
    try:
        # Bytes are decoded strictly: json.loads would take UTF-8-encoded surrogates (CESU-8),
        # which are not UTF-8. A byte order mark it skips, and so does this.
        text = payload if isinstance(payload, str) else bytes(payload).decode("utf-8-sig")
        document = json.loads(text)
        # NaN and infinities encode as null, which every typed field refuses. In 1.6 so does
        # jsonschema (its number fields all carry multipleOf, where the ocpp library fails on
        # them); 2.x number fields take them there, and we deliberately do not (they are not
        # JSON, and would be stored as null). Walking the document recurses too: json.loads
        # can read deeper than that.
        return msgspec.json.encode(_without_lone_surrogates(document))
    except (ValueError, RecursionError) as error:
        return error


def _without_lone_surrogates(value: Any) -> Any:
    # UTF-8 cannot carry lone surrogates; U+FFFD keeps the string's length in code points, so
    # maxLength is judged identically, and it matches no enum value, as the surrogate did not.
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_without_lone_surrogates(item) for item in value]
    if isinstance(value, dict):
        return {
            _without_lone_surrogates(key): _without_lone_surrogates(item)
            for key, item in value.items()
        }
    return value
