"""A full disk or a read-only output folder: every command stops with one line naming the path
(exit code 2, no traceback), as for other errors a user fixes on their side."""

from __future__ import annotations

import builtins
import errno
import io
import os
from pathlib import Path

import pytest

from cli_samples import run_cli
from dicom_samples import write_dicom_folder
from digits_samples import write_digits_csv
from medilab import api
from medilab.cli import main
from medilab.errors import storage_error_line

NO_SPACE = os.strerror(errno.ENOSPC)
DENIED = os.strerror(errno.EACCES)


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


def _inside(path: object, folder: Path) -> bool:
    try:
        return Path(os.path.abspath(os.fspath(path))).is_relative_to(folder)
    except TypeError:  # a file descriptor
        return False


def simulate_read_only(monkeypatch, folder: Path) -> None:
    """Refuse, as a folder without write permission does, to create folders and files under
    ``folder`` (for root, which real permissions do not stop)."""
    real_mkdir, real_open = os.mkdir, os.open

    def mkdir(path, mode=0o777, *, dir_fd=None):  # noqa: ANN001, ANN202
        if _inside(path, folder):
            raise PermissionError(errno.EACCES, DENIED, os.fspath(path))
        return real_mkdir(path, mode, dir_fd=dir_fd)

    def open_(path, flags, mode=0o777, *, dir_fd=None):  # noqa: ANN001, ANN202
        if flags & os.O_CREAT and _inside(path, folder):
            raise PermissionError(errno.EACCES, DENIED, os.fspath(path))
        return real_open(path, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(os, "open", open_)


def simulate_full_disk(monkeypatch, folder: Path) -> None:
    """Writing a file under ``folder`` fails with ENOSPC and, like a failed ``write()``, names
    no file."""
    real_open = builtins.open

    def open_(file, mode="r", *args, **kwargs):  # noqa: ANN001, ANN202
        if any(c in mode for c in "wax+") and _inside(file, folder):
            raise OSError(errno.ENOSPC, NO_SPACE)
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", open_)
    monkeypatch.setattr(io, "open", open_)


@pytest.fixture
def read_only(request, monkeypatch, tmp_path):
    """An existing output folder that cannot be written: chmod 0o555 (``real``; skipped as
    root) or simulated."""
    folder = tmp_path / "readonly"
    folder.mkdir()
    if request.param == "real":
        if os.geteuid() == 0:
            pytest.skip("root ignores folder permissions")
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
    else:
        simulate_read_only(monkeypatch, folder)
        yield folder


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("storage")
    csv = write_digits_csv(root / "train.csv", n=80)
    config = root / "tiny.yaml"
    config.write_text(
        f"experiment: tiny\nseed: 1\n"
        f"data: {{source: pixel_csv, train_csv: {csv}, pixel_scale: 16, batch_size: 32}}\n"
        "model: {name: simple_nn, kwargs: {hidden_sizes: [8]}}\n"
        "trainer: {max_epochs: 1, progress_bar: false}\n", encoding="utf-8")
    return api.train(config, run_dir=root / "run", evaluate_after=False)


@pytest.fixture
def test_csv(tmp_path) -> Path:
    return write_digits_csv(tmp_path / "test.csv", n=10, labelled=False)


# ----------------------------------------------------------------------------- the message
def test_storage_error_line_names_the_path():
    full = OSError(errno.ENOSPC, NO_SPACE, "/data/out/preds.csv")
    assert storage_error_line(full) == f"cannot write /data/out/preds.csv: {NO_SPACE}"
    read_only_fs = OSError(errno.EROFS, os.strerror(errno.EROFS), "/mnt/ro/x")
    assert storage_error_line(read_only_fs) == f"cannot write /mnt/ro/x: {os.strerror(errno.EROFS)}"
    assert storage_error_line(PermissionError(errno.EACCES, DENIED, "/ro")) == \
        f"cannot write /ro: {DENIED}"
    assert storage_error_line(OSError(errno.EDQUOT, "Disk quota exceeded")) == \
        "cannot write: Disk quota exceeded"


def test_other_errors_are_not_storage_errors():
    assert storage_error_line(FileNotFoundError(errno.ENOENT, "No such file", "/x")) is None
    assert storage_error_line(OSError("no errno")) is None
    assert storage_error_line(ValueError("x")) is None


# ----------------------------------------------------------------------------- read-only folder
@pytest.mark.parametrize("read_only", ["real", "simulated"], indirect=True)
def test_train_into_a_read_only_folder(read_only, digits_run, capsys):
    config = digits_run / "config.yaml"
    run_dir = read_only / "run"
    assert run_cli("train", config, "--run-dir", run_dir) == 2
    assert one_error_line(capsys) == f"error: cannot write {run_dir}: {DENIED}"


@pytest.mark.parametrize("read_only", ["real", "simulated"], indirect=True)
def test_predict_into_a_read_only_folder(read_only, digits_run, test_csv, capsys):
    out = read_only / "preds.csv"
    assert run_cli("predict", digits_run, test_csv, "--out", out) == 2
    assert one_error_line(capsys) == f"error: cannot write {out}: {DENIED}"
    assert not out.exists()


@pytest.mark.parametrize("read_only", ["real", "simulated"], indirect=True)
def test_dicom_convert_into_a_read_only_folder(read_only, tmp_path, capsys):
    write_dicom_folder(tmp_path / "dicoms", 2)
    assert run_cli("dicom", "convert", tmp_path / "dicoms", read_only) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"error: cannot write {read_only}{os.sep}") and line.endswith(DENIED)


def test_debug_shows_the_traceback(monkeypatch, digits_run, test_csv, tmp_path):
    simulate_read_only(monkeypatch, tmp_path / "ro")
    with pytest.raises(PermissionError):
        main(["--debug", "predict", str(digits_run), str(test_csv), "--out",
              str(tmp_path / "ro" / "preds.csv")])


# ----------------------------------------------------------------------------- full disk
def test_train_on_a_full_disk(monkeypatch, digits_run, tmp_path, capsys):
    run_dir = tmp_path / "full" / "run"
    simulate_full_disk(monkeypatch, tmp_path / "full")
    assert run_cli("train", digits_run / "config.yaml", "--run-dir", run_dir) == 2
    assert one_error_line(capsys) == f"error: cannot write {run_dir / 'status.json'}: {NO_SPACE}"
    assert not run_dir.exists()  # the same command runs again once there is space


def test_predict_on_a_full_disk(monkeypatch, digits_run, test_csv, tmp_path, capsys):
    out = tmp_path / "full" / "preds.csv"
    simulate_full_disk(monkeypatch, tmp_path / "full")
    assert run_cli("predict", digits_run, test_csv, "--out", out) == 2
    assert one_error_line(capsys) == f"error: cannot write {out}: {NO_SPACE}"
    assert not out.exists() and not list(out.parent.glob(".preds.csv*"))


def test_dicom_convert_on_a_full_disk(monkeypatch, tmp_path, capsys):
    write_dicom_folder(tmp_path / "dicoms", 2)
    dst = tmp_path / "full"
    simulate_full_disk(monkeypatch, dst)
    assert run_cli("dicom", "convert", tmp_path / "dicoms", dst, "--salt", "s") == 2
    assert one_error_line(capsys) == f"error: cannot write {dst / 'manifest.csv'}: {NO_SPACE}"
    assert not list(dst.rglob("*.png"))
