"""medilab.tune.storage: when a running trial's worker counts as gone."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
import time

import pytest
from optuna.trial import FrozenTrial, TrialState

from medilab.tune.storage import STALE_AFTER_S, is_stale


def running(user_attrs, started_s_ago=0.0, state=TrialState.RUNNING):
    start = dt.datetime.now() - dt.timedelta(seconds=started_s_ago)
    return FrozenTrial(number=0, state=state, value=None, datetime_start=start,
                       datetime_complete=None, params={}, distributions={},
                       user_attrs=user_attrs, system_attrs={}, intermediate_values={},
                       trial_id=0)


@pytest.fixture(scope="module")
def dead_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_worker_on_this_machine_is_gone_when_its_pid_is(dead_pid):
    host = socket.gethostname()
    now = time.time()
    assert is_stale(running({"host": host, "pid": dead_pid, "heartbeat": now}))
    assert not is_stale(running({"host": host, "pid": os.getppid(), "heartbeat": now - 3600}))
    assert not is_stale(running({"host": host, "pid": os.getpid(), "heartbeat": now}))


def test_a_worker_elsewhere_is_gone_when_its_heartbeat_is_old():
    now = time.time()
    elsewhere = {"host": "another-node", "pid": 1}
    assert not is_stale(running({**elsewhere, "heartbeat": now - 60}))
    assert is_stale(running({**elsewhere, "heartbeat": now - STALE_AFTER_S - 1}))


def test_a_trial_without_its_worker_name_waits_for_the_grace_time():
    assert not is_stale(running({}))
    assert is_stale(running({}, started_s_ago=STALE_AFTER_S + 5))
    assert not is_stale(running({}, started_s_ago=STALE_AFTER_S + 5, state=TrialState.COMPLETE))
