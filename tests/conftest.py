"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from digits_samples import write_digits_csv

REPO = Path(__file__).resolve().parents[1]


def medilab_data_root() -> Path:
    """``$MEDILAB_DATA`` or ``../shared/data`` beside the repository."""
    return Path(os.environ.get("MEDILAB_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture
def medilab_data() -> Path:
    """The real datasets folder; tests using it skip when it is absent."""
    root = medilab_data_root()
    if not root.is_dir():
        pytest.skip(f"MEDILAB_DATA folder {root} not present")
    return root


@pytest.fixture
def make_digits_csv():
    """The ``write_digits_csv`` helper, for tests that need several tables."""
    return write_digits_csv


@pytest.fixture
def digits_csv(tmp_path: Path) -> Path:
    return write_digits_csv(tmp_path / "train.csv")


@pytest.fixture
def digits_config(tmp_path: Path, digits_csv: Path) -> Path:
    """A tiny SimpleNN experiment on ``digits_csv`` (2 epochs, no progress bar)."""
    path = tmp_path / "tiny_digits.yaml"
    path.write_text(
        f"""
experiment: tiny_digits
seed: 1
data:
  source: pixel_csv
  train_csv: {digits_csv}
  pixel_scale: 16
  batch_size: 32
model:
  name: simple_nn
  kwargs: {{hidden_sizes: [32], dropout: 0.1}}
optimizer: {{name: adam, lr: 0.01}}
trainer:
  max_epochs: 2
  progress_bar: false
evaluation:
  bootstrap_samples: 50
""",
        encoding="utf-8",
    )
    return path


@pytest.fixture(autouse=True, scope="session")
def array_cache_in_tmp(tmp_path_factory):
    """Decoded-image caches go to a temporary folder, never the user's ``~/.cache``."""
    from medilab.data.cache import CACHE_DIR_ENV

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_DIR_ENV, str(tmp_path_factory.mktemp("array_cache")))
        yield


@pytest.fixture
def one_torch_thread():
    """Single-threaded torch for one test, restored after: tiny models run much faster on one
    thread than on threads fighting over a shared 2-core machine. A file opts in with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def no_loader_workers_unless_asked(monkeypatch):
    """``data.num_workers: auto`` starts worker processes on machines with more than two
    cores: keep the suite in one process (and its numbers the same) on every CI machine."""
    from medilab.data import loading

    monkeypatch.setattr(loading, "available_cores", lambda: 2)


@pytest.fixture(autouse=True, scope="session")
def fp32_in_every_process():
    """``trainer.precision: auto`` picks bf16 on CPUs with native bf16 (AVX512-BF16, AMX) and on
    GPUs: ``MEDILAB_PRECISION=32-true`` makes ``auto`` fp32 in this process and in every CLI
    subprocess a test starts, so no expected number depends on the machine (tests of the choice
    itself remove it)."""
    from medilab.precision import PRECISION_ENV

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(PRECISION_ENV, "32-true")
        yield


@pytest.fixture(autouse=True)
def fp32_unless_asked(monkeypatch):
    """No native bf16 in-process either, for code that asks the CPU directly (tests of the
    choice itself pass a cpuinfo file or patch it)."""
    from medilab import precision

    real = precision.cpu_has_native_bf16

    def no_native_bf16(cpuinfo=None):
        return False if cpuinfo is None else real(cpuinfo)

    monkeypatch.setattr(precision, "cpu_has_native_bf16", no_native_bf16)


class NetworkBlocked(OSError):
    """The suite tried to reach a host other than this machine."""


def _is_local(address: object) -> bool:
    """Loopback / this host's names, and every Unix socket (a path or bytes)."""
    import ipaddress

    if not isinstance(address, tuple):
        return True  # AF_UNIX path
    host = address[0]
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    if host in ("localhost", "", "0.0.0.0", "::"):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False  # another host name: resolving it would already use the network


@pytest.fixture(autouse=True, scope="session")
def no_network():
    """Training, evaluation and prediction never phone home: connections to anything but this
    machine fail for the whole suite (DDP on localhost still works)."""
    import socket

    connect, connect_ex = socket.socket.connect, socket.socket.connect_ex

    def guarded(method):
        def call(self, address, *args, **kwargs):
            if not _is_local(address):
                raise NetworkBlocked(f"test suite is offline: connection to {address!r} blocked")
            return method(self, address, *args, **kwargs)

        return call

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", guarded(connect))
        patch.setattr(socket.socket, "connect_ex", guarded(connect_ex))
        yield
