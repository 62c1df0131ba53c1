"""``make_private_tree`` skips a file that is listed and gone before its chmod (SQLite's
journal, removed by a concurrent write such as the server's batched audit flush): no 500."""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from facedb import config


def test_a_file_gone_between_the_listing_and_the_chmod_is_skipped(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    (home / "sub").mkdir(parents=True)
    kept = home / "facedb.sqlite3"
    kept.write_bytes(b"x")
    os.chmod(kept, 0o644)
    real_walk = os.walk

    def walk(root: object) -> Iterator[tuple[str, list[str], list[str]]]:
        for dirpath, dirnames, filenames in real_walk(root):  # type: ignore[call-overload]
            # a journal listed, then removed by a commit in another thread; and a folder gone too
            yield dirpath, dirnames, [*filenames, "facedb.sqlite3-journal"]
        yield str(home / "gone"), [], ["x"]

    monkeypatch.setattr(config.os, "walk", walk)
    config.make_private_tree(home)
    assert kept.stat().st_mode & 0o777 == 0o600
    assert (home / "sub").stat().st_mode & 0o777 == 0o700
