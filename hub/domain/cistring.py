"""OCPP's CiString: text compared without regard to case (OCPP 1.6 §7.15: idTag is
CiString20; vendorId, messageId and configuration keys are CiStrings too).

Lookups key by ``ci(text)``; what is shown keeps the spelling as it was given.
"""

from __future__ import annotations


def ci(text: str) -> str:
    """The form two CiStrings share when they are equal: ``Aqckz`` and ``aQCKZ`` are one tag."""
    return text.casefold()
