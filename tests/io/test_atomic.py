import os
import stat
import time

import pytest

from medilab.io.atomic import atomic_dir, atomic_path, write_once, write_text


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


def test_write_once_keeps_the_first_writer_and_returns_what_the_file_holds(tmp_path):
    target = tmp_path / "folder" / "folds.csv"
    assert write_once(target, b"first\n") == b"first\n"
    assert write_once(target, b"second\n") == b"first\n"  # a later process reads the first
    assert target.read_bytes() == b"first\n"
    assert [p.name for p in target.parent.iterdir()] == ["folds.csv"]  # no temporary left


def test_processes_racing_on_write_once_all_read_the_same_whole_file(tmp_path):
    """Four processes write different contents to each of 100 names at once: one wins each
    name and every process reads back exactly the winner's bytes."""
    go, children = tmp_path / "go", []
    for worker in range(4):
        pid = os.fork()
        if pid == 0:  # the child: race, record what it read back, never return into pytest
            code = 1
            try:
                while not go.exists():  # start together
                    time.sleep(0.001)
                seen = [write_once(tmp_path / f"t{i}.csv", f"{worker}\n".encode() * 2000)
                        for i in range(100)]
                (tmp_path / f"seen{worker}").write_bytes(b"|".join(seen))
                code = 0
            finally:
                os._exit(code)
        children.append(pid)
    go.touch()
    assert [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children] == [0] * 4
    seen = {(tmp_path / f"seen{worker}").read_bytes() for worker in range(4)}
    assert seen == {b"|".join((tmp_path / f"t{i}.csv").read_bytes() for i in range(100))}
    assert not list(tmp_path.glob(".*"))
