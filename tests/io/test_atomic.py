import os
import stat

import pytest

from medilab.io.atomic import atomic_dir, atomic_path, write_text


def test_atomic_path_renames_on_success_with_normal_permissions(tmp_path):
    target = tmp_path / "sub" / "out.csv"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp != target
        tmp.write_text("a,b\n")
        assert not target.exists()
    assert target.read_text() == "a,b\n"
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask


def test_atomic_path_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "out.csv"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_keeps_old_file_on_error(tmp_path):
    target = write_text(tmp_path / "out.txt", "old")
    with pytest.raises(ValueError), atomic_path(target) as tmp:
        tmp.write_text("new")
        raise ValueError
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_dir(tmp_path):
    target = tmp_path / "folder"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("x")
    assert (target / "a.txt").read_text() == "x"
    with pytest.raises(KeyError), atomic_dir(tmp_path / "never") as tmp:
        raise KeyError
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder"]


def test_a_failed_write_names_the_target_not_the_temporary_file(tmp_path):
    import errno

    target = tmp_path / "out.csv"
    with pytest.raises(OSError) as info, atomic_path(target):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as write() on a full disk
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert list(tmp_path.iterdir()) == []


def test_a_folder_refusing_the_temporary_file_is_named_by_the_target(tmp_path, monkeypatch):
    import errno
    import tempfile

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / ".out.csv.x"))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(PermissionError) as info:
        write_text(tmp_path / "out.csv", "x")
    assert info.value.filename == str(tmp_path / "out.csv")


def test_errors_naming_another_file_are_left_alone(tmp_path):
    with pytest.raises(FileNotFoundError) as info, atomic_path(tmp_path / "out.csv"):
        open(tmp_path / "missing.txt")  # noqa: SIM115
    assert info.value.filename == str(tmp_path / "missing.txt")
