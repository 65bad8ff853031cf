"""The projection contract on the embedded backend: chDB in this process."""

from __future__ import annotations

import pytest

from hub.config import Settings
from tests.projections.contract import ProjectionContract


class TestChdb(ProjectionContract):
    @pytest.fixture
    def projection_settings(self, settings: Settings) -> Settings:
        return settings
