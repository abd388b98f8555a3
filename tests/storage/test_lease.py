"""One coordinating run per store: the lease (storage/lease.py)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pytest

from tfus.storage import StoreBusy, acquire_lease, create_dataset
from tfus.storage.lease import LEASE_NAME, STALE_AFTER_S
from tests.storage.helpers import SPEC


def test_a_held_store_refuses_a_second_run_in_one_line_naming_the_holder(tmp_path):
    url = tmp_path / "ds.zarr"
    with acquire_lease(url, label="tfus generate") as lease:
        create_dataset(url, SPEC)  # the lease may come first: a root holding only it is still empty
        with pytest.raises(StoreBusy) as info:
            acquire_lease(url)
        text = str(info.value)
        assert "\n" not in text and socket.gethostname() in text and f"pid {lease.info['pid']}" in text
        assert lease.info["since_utc"] in text and "tfus generate" in text
        lease.check()
    assert not (url / LEASE_NAME).exists()
    acquire_lease(url).release()  # free again


def _write_holder(url, **fields) -> None:
    url.mkdir(parents=True, exist_ok=True)
    holder = {"host": socket.gethostname(), "pid": 1, "label": "old run", "token": "x", "since": 0.0,
              "since_utc": "then", "heartbeat": time.time(), **fields}
    (url / LEASE_NAME).write_text(json.dumps(holder))


def test_a_killed_run_s_lease_is_taken_over(tmp_path):
    url = tmp_path / "ds.zarr"
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    _write_holder(url, pid=int(gone.stdout))  # this host, a process that has exited
    with acquire_lease(url) as lease:
        assert json.loads((url / LEASE_NAME).read_text())["token"] == lease.token


def test_a_lease_without_heartbeat_is_stale_a_live_one_is_not(tmp_path):
    url = tmp_path / "ds.zarr"
    _write_holder(url, host="node-elsewhere", pid=4242, heartbeat=time.time() - 10)
    with pytest.raises(StoreBusy, match="node-elsewhere, pid 4242"):
        acquire_lease(url)
    _write_holder(url, host="node-elsewhere", pid=4242, heartbeat=time.time() - STALE_AFTER_S - 5)
    acquire_lease(url).release()
    _write_holder(url, host="x")
    (url / LEASE_NAME).write_text('{"host": "half-writ')  # a run killed while writing it
    acquire_lease(url).release()


def test_a_run_whose_lease_was_taken_over_stops_before_committing(tmp_path):
    url = tmp_path / "ds.zarr"
    lease = acquire_lease(url)
    _write_holder(url, host="node-elsewhere", pid=7, token="other")  # taken over while this run stalled
    with pytest.raises(StoreBusy, match="lost its lease"):
        lease.check()
    lease.release()
    assert json.loads((url / LEASE_NAME).read_text())["token"] == "other"  # not ours to remove
