"""Hypothesis strategies for the fuzz tests: the frame catalogue of ``bench/fuzz_frames.py``
drawn through Hypothesis, so that every failure shrinks to a minimal frame."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import pytest
from hypothesis import strategies as st

from bench.fuzz_frames import ID_ALPHABET, MUTATIONS, FuzzFrame, enabled

T = TypeVar("T")


class DrawChooser:
    """A :class:`bench.fuzz_frames.Chooser` on Hypothesis's ``draw``."""

    def __init__(self, draw: Any) -> None:
        self._draw = draw

    def integer(self, low: int, high: int) -> int:
        value: int = self._draw(st.integers(low, high))
        return value

    def choice(self, options: Sequence[T]) -> T:
        value: T = self._draw(st.sampled_from(options))
        return value

    def text(self, max_size: int) -> str:
        value: str = self._draw(st.text(max_size=min(max_size, 40)))
        return value

    def binary(self, max_size: int) -> bytes:
        value: bytes = self._draw(st.binary(max_size=max_size))
        return value

    def unique_id(self) -> str:
        value: str = self._draw(st.text(ID_ALPHABET, min_size=1, max_size=36))
        return value


@st.composite
def frames(draw: Any, mutation: str) -> FuzzFrame:
    return MUTATIONS[mutation](DrawChooser(draw))


def skip_unless_enabled(mutation: str) -> None:
    """Honour ``HUB_FUZZ_SKIP`` (see bench/fuzz_frames.py)."""
    if mutation not in enabled(list(MUTATIONS)):
        pytest.skip(f"{mutation} is listed in HUB_FUZZ_SKIP")
