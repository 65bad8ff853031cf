from __future__ import annotations

from tests.integration.conftest import gateway

__all__ = ["gateway"]
