"""The embedded server's credentials and the data directory's lock, without a server."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.nats_server import ensure_password, redacted, with_credentials
from hub.runtime import DataDirInUse, data_dir_lock, data_dir_locked


def test_credentials_go_into_the_url_and_never_out_of_it() -> None:
    url = with_credentials("nats://127.0.0.1:4222", "s3cret-_x")
    assert url == "nats://hub:s3cret-_x@127.0.0.1:4222"
    assert redacted(url) == "nats://hub:***@127.0.0.1:4222"
    assert redacted("nats://127.0.0.1:4222") == "nats://127.0.0.1:4222"
    assert redacted("tls://alice:pw@nats.example:4222") == "tls://alice:***@nats.example:4222"


def test_the_password_is_made_once_for_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "nats.password"
    password = ensure_password(path)
    assert len(password) >= 40 and password == path.read_text().strip()
    assert path.stat().st_mode & 0o777 == 0o600
    path.chmod(0o644)
    assert ensure_password(path) == password
    assert path.stat().st_mode & 0o777 == 0o600
    path.write_text("")
    with pytest.raises(ValueError, match="empty"):
        ensure_password(path)


def test_the_data_directory_has_one_holder_at_a_time(tmp_path: Path) -> None:
    assert not data_dir_locked(tmp_path)
    with data_dir_lock(tmp_path):
        assert data_dir_locked(tmp_path)
        with pytest.raises(DataDirInUse, match=r"in use by pid \d+ \(hub"), data_dir_lock(tmp_path):
            pass
    assert not data_dir_locked(tmp_path)
    with data_dir_lock(tmp_path):
        pass
