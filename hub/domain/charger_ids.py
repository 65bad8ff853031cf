"""Which charger ids the hub accepts: one rule for registration and for connecting chargers.

An id is 1-48 characters of OCPP 2.0.1's ``identifierString`` set (``a-z A-Z 0-9 * - _ = +
| @ .``) without ``:``, which would make HTTP Basic credentials ambiguous. OCPP 1.6 leaves
the set open; keeping to ASCII removes every look-alike Unicode offers (a trailing space,
U+2010 HYPHEN for ``-``, fullwidth letters, combining accents, Cyrillic U+0421 for ``C``).
What is left is ASCII's own (``O`` and ``0``) and case: ids are compared exactly.
"""

from __future__ import annotations

import string
import unicodedata
from typing import Final

MAX_LENGTH: Final = 48
ALLOWED: Final = frozenset(string.ascii_letters + string.digits + "*-_=+|@.")
ALLOWED_TEXT: Final = "A-Z a-z 0-9 * - _ = + | @ ."


def id_problem(candidate: str) -> str | None:
    """Why ``candidate`` is not an acceptable charger id, or None if it is."""
    if not candidate:
        return "the id is empty"
    if len(candidate) > MAX_LENGTH:
        return f"{len(candidate)} characters, more than {MAX_LENGTH}"
    for character in candidate:
        if character not in ALLOWED:
            return f"{_describe(character)} is not allowed; ids use {ALLOWED_TEXT}"
    return None


def _describe(character: str) -> str:
    name = unicodedata.name(character, "")
    code = f"U+{ord(character):04X}"
    return f"{code} {name}" if name else code
