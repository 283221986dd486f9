"""gaaf.io: atomic writes leave the old file or the new one, and new files get open()'s mode."""
from __future__ import annotations

import os
import stat

import pytest

from gaaf.io import atomic_open, atomic_save, atomic_write_json, atomic_write_text, current_umask, default_mode


@pytest.fixture
def umask():
    """Set a umask for one test and restore the old one."""
    old = os.umask(0o022)
    os.umask(old)

    def set_(mask: int) -> None:
        os.umask(mask)

    yield set_
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077, 0o027])
def test_written_files_get_open_mode(tmp_path, umask, mask):
    umask(mask)
    assert current_umask() == mask
    plain = tmp_path / "plain.txt"
    with open(plain, "w") as f:
        f.write("x")
    atomic_write_text(tmp_path / "a.txt", "x")
    atomic_write_json(tmp_path / "b.json", {"a": 1})
    atomic_save(tmp_path / "c.bin", lambda f: f.write(b"\0"))
    for name in ("a.txt", "b.json", "c.bin"):
        assert _mode(tmp_path / name) == _mode(plain) == 0o666 & ~mask, name
    assert default_mode(directory=True) == 0o777 & ~mask


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "keep.txt"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_open(target, "w") as f:
            f.write("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_bad_mode_is_refused(tmp_path):
    with pytest.raises(ValueError, match="'w' or 'wb'"):
        with atomic_open(tmp_path / "x", "a"):
            pass
