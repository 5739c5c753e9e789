"""Atomic writes: the target appears only complete, an error leaves the earlier file and no temporary
behind."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from simclr.files import atomic_file, atomic_write_text


def test_writes_text_and_bytes_creating_the_folder(tmp_path: Path) -> None:
    target = tmp_path / "new" / "folder" / "a.txt"
    atomic_write_text(target, "héllo\n")
    assert target.read_text(encoding="utf-8") == "héllo\n"
    with atomic_file(tmp_path / "b.npz") as fh:
        np.savez(fh, x=np.arange(3))
    # numpy writes to the open file, name as given
    assert np.load(tmp_path / "b.npz")["x"].tolist() == [0, 1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.npz", "new"]


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_an_error_keeps_the_earlier_file_and_leaves_no_temporary(tmp_path: Path, error: type) -> None:
    target = tmp_path / "results.csv"
    target.write_text("earlier\n")
    with pytest.raises(error), atomic_file(target, "w") as fh:
        fh.write("half of the new")
        raise error()
    assert target.read_text() == "earlier\n"
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"]


def test_the_target_is_untouched_until_the_file_is_complete(tmp_path: Path) -> None:
    target = tmp_path / "a.txt"
    target.write_text("old")
    with atomic_file(target, "w") as fh:
        fh.write("new")
        fh.flush()
        assert target.read_text() == "old"
    assert target.read_text() == "new"


def test_only_whole_file_modes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mode"), atomic_file(tmp_path / "a", "a"):
        pass
    assert not list(tmp_path.iterdir())


def test_permissions_follow_the_umask_or_the_file_replaced(tmp_path: Path) -> None:
    """Not the owner-only permissions of a temporary file: a new file gets what the umask gives any new file,
    a replaced file keeps its own."""
    old = os.umask(0o027)
    try:
        atomic_write_text(tmp_path / "new.csv", "a\n")
        assert stat.S_IMODE((tmp_path / "new.csv").stat().st_mode) == 0o640
        os.chmod(tmp_path / "new.csv", 0o604)
        atomic_write_text(tmp_path / "new.csv", "b\n")
        assert stat.S_IMODE((tmp_path / "new.csv").stat().st_mode) == 0o604
    finally:
        os.umask(old)
    assert os.umask(old) == old  # the umask is left as it was


def test_check_output_refuses_folders_inputs_and_run_checkpoints(tmp_path: Path) -> None:
    from simclr.errors import InputError
    from simclr.files import check_output

    assert check_output(tmp_path / "new.npz") == tmp_path / "new.npz"
    with pytest.raises(InputError, match="is a folder"):
        check_output(tmp_path)
    data = tmp_path / "in.pt"
    data.write_bytes(b"x")
    with pytest.raises(InputError, match="--sheet .* is the file being read"):
        check_output(tmp_path / "." / "in.pt", "--sheet", (data,))
    (tmp_path / "last.pt").write_bytes(b"x")
    check_output(tmp_path / "last.pt")  # a last.pt of no run may be replaced
    (tmp_path / "config.yaml").write_text("x")
    for name in ("last.pt", "epoch_0010.pt"):
        (tmp_path / name).write_bytes(b"x")
        with pytest.raises(InputError, match="a run's checkpoint"):
            check_output(tmp_path / name)
    check_output(tmp_path / "epoch_0011.pt")  # not there yet: nothing to lose
    for name in ("config.yaml", "metrics.jsonl", "views.png"):
        (tmp_path / name).write_text("x")
        with pytest.raises(InputError, match="a run's own file"):
            check_output(tmp_path / name)
    blocker = tmp_path / "plain-file"
    blocker.write_text("x")
    with pytest.raises(InputError, match="cannot be written: .*plain-file is not a writable folder"):
        check_output(blocker / "sub" / "out.npz")  # its parent would have to be made inside a file


def test_atomic_write_errors_name_the_users_file(tmp_path: Path) -> None:
    from simclr.errors import InputError
    from simclr.files import atomic_write_text

    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError, match=r"cannot write .*f/out\.txt") as err:
        atomic_write_text(tmp_path / "f" / "out.txt", "y")
    assert ".tmp" not in str(err.value)
    (tmp_path / "folder").mkdir()
    with pytest.raises(InputError, match=r"cannot write .*folder: Is a directory") as err:
        atomic_write_text(tmp_path / "folder", "y")
    assert ".tmp" not in str(err.value) and not list(tmp_path.glob(".*tmp"))
