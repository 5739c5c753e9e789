"""File digests remembered between runs: unchanged files are not read again, changed ones always are."""

import os
import time
from pathlib import Path

import pytest

from simclr.data import digests as digests_mod
from simclr.data.digests import file_digests

OLD = time.time() - 3600  # an hour ago: past the racy window


def _files(root: Path) -> list[str]:
    root.mkdir()
    names = ["a.bin", "b.bin"]
    for n, text in zip(names, (b"first", b"second")):
        (root / n).write_bytes(text)
        os.utime(root / n, (OLD, OLD))
    return names


def _no_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args, **kwargs):
        raise AssertionError("read a file")

    monkeypatch.setattr(digests_mod, "open", boom, raising=False)


def test_unchanged_files_come_from_the_memo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    names = _files(tmp_path / "d")
    first = file_digests(tmp_path / "d", names, tmp_path / "memo")
    assert first == file_digests(tmp_path / "d", names)  # the same digests with and without a memo
    assert first[0] != first[1] and all(d is not None and len(d) == 32 for d in first)
    _no_reads(monkeypatch)
    assert file_digests(tmp_path / "d", names, tmp_path / "memo") == first


def test_a_replaced_file_is_read_again_even_with_its_old_size_and_time(tmp_path: Path) -> None:
    names = _files(tmp_path / "d")
    first = file_digests(tmp_path / "d", names, tmp_path / "memo")
    (tmp_path / "d" / "a.bin").write_bytes(b"FIRST")  # same size
    os.utime(tmp_path / "d" / "a.bin", (OLD, OLD))  # same modification time: only the change time moved
    again = file_digests(tmp_path / "d", names, tmp_path / "memo")
    assert again[0] != first[0] and again[1] == first[1]
    assert again == file_digests(tmp_path / "d", names)


def test_a_just_written_file_is_not_remembered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "new.bin").write_bytes(b"fresh")  # modified now: its time may not show a second change
    file_digests(tmp_path / "d", ["new.bin"], tmp_path / "memo")
    assert not list((tmp_path / "memo").glob("*.json"))
    _no_reads(monkeypatch)
    with pytest.raises(AssertionError, match="read a file"):
        file_digests(tmp_path / "d", ["new.bin"], tmp_path / "memo")


def test_missing_files_and_a_damaged_memo(tmp_path: Path) -> None:
    names = _files(tmp_path / "d")
    first = file_digests(tmp_path / "d", names + ["gone.bin"], tmp_path / "memo")
    assert first[2] is None
    memo = next((tmp_path / "memo").glob("*.json"))
    memo.write_text("{not json")
    assert file_digests(tmp_path / "d", names, tmp_path / "memo") == first[:2]
    memo.write_text('{"a.bin": [[1, 2, 3, 4], "x"], "b.bin": 7}')  # foreign or stale entries are ignored
    assert file_digests(tmp_path / "d", names, tmp_path / "memo") == first[:2]


def test_deleted_files_leave_the_memo(tmp_path: Path) -> None:
    """The memo keeps the other split's files (asked for in another call) but not the files deleted since."""
    import json

    names = _files(tmp_path / "d")
    file_digests(tmp_path / "d", names[:1], tmp_path / "memo")  # the "train" split
    file_digests(tmp_path / "d", names[1:], tmp_path / "memo")  # the "test" split, same folder
    memo = next((tmp_path / "memo").glob("*.json"))
    assert sorted(json.loads(memo.read_text())) == names
    (tmp_path / "d" / "a.bin").unlink()
    (tmp_path / "d" / "c.bin").write_bytes(b"third")
    os.utime(tmp_path / "d" / "c.bin", (OLD, OLD))
    file_digests(tmp_path / "d", ["c.bin"], tmp_path / "memo")
    assert sorted(json.loads(memo.read_text())) == ["b.bin", "c.bin"]  # a.bin is gone; b.bin still there
    (tmp_path / "d" / "b.bin").unlink()
    assert file_digests(tmp_path / "d", ["b.bin", "c.bin"], tmp_path / "memo")[0] is None
    assert sorted(json.loads(memo.read_text())) == ["c.bin"]  # a file asked for and missing leaves it too
