"""The fuzz catalogue itself: frames the WebSocket layer would take, valid frames that are
valid, and the switch that leaves classes out."""

from __future__ import annotations

import pytest

from bench.fuzz_frames import (
    HARD_FRAME_LIMIT,
    MUTATIONS,
    RandomChooser,
    enabled,
    generate,
)
from hub.gateway.protocol import ValidCall, inspect


def test_every_class_stays_under_the_websocket_limit_and_valid_frames_are_valid() -> None:
    chooser = RandomChooser(seed=7)
    seen: set[str] = set()
    for _ in range(3000):
        frame = generate(chooser, list(MUTATIONS))
        seen.add(frame.mutation)
        assert len(frame.data) <= HARD_FRAME_LIMIT, frame
        if frame.valid:
            assert isinstance(inspect("1.6", frame.data, max_frame_bytes=65536), ValidCall), frame
    assert seen == set(MUTATIONS)


def test_the_skip_switch_leaves_classes_out_and_refuses_unknown_names() -> None:
    names = list(MUTATIONS)
    assert enabled(names, {}) == tuple(names)
    kept = enabled(names, {"HUB_FUZZ_SKIP": "action, binary"})
    assert "action" not in kept and "binary" not in kept and "valid" in kept
    with pytest.raises(ValueError, match="unknown mutations"):
        enabled(names, {"HUB_FUZZ_SKIP": "actoin"})
