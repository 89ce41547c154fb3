"""Where a tune's trials live (an Optuna storage shared by every worker) and the bookkeeping
that lets workers share it: who runs which trial, trials left behind by a killed worker, and
the claim that keeps the number of trials at N when several workers ask at once.

Every trial carries user attributes ``host`` and ``pid`` (its worker) and ``heartbeat`` (a time
its worker refreshes while it runs). A RUNNING trial is *stale* when its worker is gone (same
host, pid not alive) or its heartbeat is older than :data:`STALE_AFTER_S`; a stale trial is
marked FAIL (``stale``) and the next trial any worker starts takes its parameters again
(``retry_of``)."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from pathlib import Path

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import FrozenTrial, TrialState

JOURNAL_FILE = "optuna.journal"  # the default storage, in the tune folder
HEARTBEAT_S = 30.0
STALE_AFTER_S = 600.0  # a worker on another machine that has not beaten for this long is gone
COUNTED = (TrialState.COMPLETE, TrialState.PRUNED)  # trials that count towards N


def open_storage(out: Path, url: str | None) -> optuna.storages.BaseStorage:
    """``url`` (any Optuna RDB URL, e.g. ``postgresql://…`` or ``sqlite:///…``), else a journal
    file in ``out`` (safe for several processes on one machine or a shared file system)."""
    if url:
        return optuna.storages.RDBStorage(url)
    out.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(out / JOURNAL_FILE)))


def local_journal(out: Path) -> optuna.storages.BaseStorage | None:
    """The journal file in ``out`` (the default storage, or a copy of a remote study), if any."""
    path = out / JOURNAL_FILE
    return JournalStorage(JournalFileBackend(str(path))) if path.is_file() else None


def mark_worker(study: optuna.Study, trial_id: int) -> None:
    """Record this process as the worker of ``trial_id``."""
    storage = study._storage  # noqa: SLF001 - Study exposes no public storage handle
    storage.set_trial_user_attr(trial_id, "host", socket.gethostname())
    storage.set_trial_user_attr(trial_id, "pid", os.getpid())
    storage.set_trial_user_attr(trial_id, "heartbeat", time.time())


@contextlib.contextmanager
def heartbeat(study: optuna.Study, trial_id: int):
    """Refresh ``trial_id``'s heartbeat every :data:`HEARTBEAT_S` seconds while the block runs."""
    stop = threading.Event()
    storage = study._storage  # noqa: SLF001

    def beat() -> None:
        while not stop.wait(HEARTBEAT_S):
            with contextlib.suppress(Exception):  # a finished trial or a storage hiccup
                storage.set_trial_user_attr(trial_id, "heartbeat", time.time())

    thread = threading.Thread(target=beat, name="medilab-tune-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def is_stale(trial: FrozenTrial, now: float | None = None) -> bool:
    """Whether a RUNNING trial's worker is gone (see the module docstring)."""
    if trial.state != TrialState.RUNNING:
        return False
    attrs = trial.user_attrs
    pid, host, beat = attrs.get("pid"), attrs.get("host"), attrs.get("heartbeat")
    if host == socket.gethostname() and isinstance(pid, int) and pid != os.getpid():
        return not _alive(pid)
    if not isinstance(beat, int | float):  # its worker has not written its name (yet)
        started = trial.datetime_start
        beat = started.timestamp() if started is not None else time.time()
    return (now or time.time()) - beat > STALE_AFTER_S


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not reaped) is gone
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def reap_stale(study: optuna.Study) -> list[int]:
    """Mark every stale trial FAIL (``stale``: its parameters are tried again); return their
    numbers (those this process marked)."""
    storage = study._storage  # noqa: SLF001
    reaped = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not is_stale(trial):
            continue
        try:
            storage.set_trial_user_attr(trial._trial_id, "stale", True)  # noqa: SLF001
            storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)  # noqa: SLF001
        except UpdateFinishedTrialError:
            continue  # another worker marked it first
        reaped.append(trial.number)
    return reaped


def counts(trials: list[FrozenTrial]) -> dict[str, int]:
    """``done`` (complete + pruned), ``running``, ``failed`` (training failed, not stale or
    surplus)."""
    return {
        "done": sum(t.state in COUNTED for t in trials),
        "running": sum(t.state == TrialState.RUNNING for t in trials),
        "failed": sum(t.state == TrialState.FAIL and "error" in t.user_attrs for t in trials),
    }


def is_surplus(study: optuna.Study, number: int, total: int) -> bool:
    """Whether trial ``number`` is one too many: ``total`` trials numbered before it already
    count or run (workers that asked at once all got a trial; the later numbers give theirs
    back)."""
    before = [t for t in study.get_trials(deepcopy=False)
              if t.number < number and (t.state in COUNTED or t.state == TrialState.RUNNING)]
    return len(before) >= total


def claim_retry(study: optuna.Study, trial: optuna.Trial) -> optuna.Trial:
    """``trial`` with the parameters of the oldest stale trial nobody tried again yet (set in
    the storage, so the returned trial's suggestions give them back), or ``trial`` itself when
    there is none. Two workers claiming one stale trial at once: the lower number keeps it."""
    storage = study._storage  # noqa: SLF001
    trials = study.get_trials(deepcopy=False)
    claimed = {t.user_attrs.get("retry_of") for t in trials if t.number != trial.number}
    stale = [t for t in trials if t.state == TrialState.FAIL and t.user_attrs.get("stale")
             and t.number not in claimed]
    if not stale:
        return trial
    target = stale[0]
    storage.set_trial_user_attr(trial._trial_id, "retry_of", target.number)  # noqa: SLF001
    rivals = [t for t in study.get_trials(deepcopy=False)
              if t.user_attrs.get("retry_of") == target.number and t.number < trial.number]
    if rivals:
        storage.set_trial_user_attr(trial._trial_id, "retry_of", None)  # noqa: SLF001
        return trial
    for name, value in target.params.items():
        distribution = target.distributions[name]
        storage.set_trial_param(trial._trial_id, name,  # noqa: SLF001
                                distribution.to_internal_repr(value), distribution)
    return optuna.trial.Trial(study, trial._trial_id)  # noqa: SLF001 - reads them back
