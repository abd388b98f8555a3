"""One coordinating run per store at a time: a lease file ``_lease.json`` at the store's root.

The coordinator alone resizes arrays and rewrites the table chunks (``storage.writing``), so two generation
runs on one store (a user re-launching, two colleagues) must not coordinate at once. ``acquire`` creates the
lease atomically (local disks: ``open(..., "x")``; object stores: an existence check, then one PUT — best
effort, as object stores have no exclusive create) naming its holder: host, pid, run label, since when, and
a heartbeat that a daemon thread refreshes every ``HEARTBEAT_S``. A second run gets ``StoreBusy``: one line
naming the holder. A lease is *stale*, and taken over, when its holder is a process of this host that no
longer exists (a killed run), or when its heartbeat is older than ``STALE_AFTER_S`` (a run on another host
that died). Workers writing their own samples need no lease: their chunks and records never overlap.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import socket
import threading
import time
import uuid

log = logging.getLogger(__name__)

LEASE_NAME = "_lease.json"
HEARTBEAT_S = 20.0
STALE_AFTER_S = 120.0


class StoreBusy(ValueError):
    """Another run holds the store's lease."""


def _now() -> float:
    return time.time()


def _iso(t: float) -> str:
    return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).isoformat(timespec="seconds")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def stale_reason(holder: dict, now: float | None = None) -> str | None:
    """Why the lease ``holder`` no longer holds (None: it does)."""
    now = _now() if now is None else now
    if holder.get("host") == socket.gethostname() and not _pid_alive(holder.get("pid", -1)):
        return f"its process {holder.get('pid')} on this host has exited"
    age = now - float(holder.get("heartbeat", 0.0))
    if age > STALE_AFTER_S:
        return f"its heartbeat is {age:.0f} s old (> {STALE_AFTER_S:.0f} s)"
    return None


class Lease:
    """The store's lease, held by this process until ``release()`` (also a context manager)."""

    def __init__(self, loc, label: str = "") -> None:
        self.loc, self.path = loc, loc.path(LEASE_NAME)
        self.token = uuid.uuid4().hex
        t = _now()
        self.info = {"host": socket.gethostname(), "pid": os.getpid(), "label": str(label), "token": self.token,
                     "since": t, "since_utc": _iso(t), "heartbeat": t}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = False

    # --- file access ---------------------------------------------------------------------------------
    def _read(self) -> dict | None:
        try:
            if self.loc.is_local:
                with open(self.path, "rb") as fh:
                    return json.loads(fh.read())
            self.loc.fs.invalidate_cache(self.loc.root)
            return json.loads(self.loc.fs.cat_file(self.path))
        except FileNotFoundError:
            return None
        except (ValueError, OSError):  # half-written by a run killed mid-write: treated as stale
            return {"host": "?", "pid": -1, "heartbeat": 0.0, "since_utc": "?", "label": "unreadable lease"}

    def _create(self) -> bool:
        data = json.dumps(self.info, sort_keys=True).encode()
        if self.loc.is_local:
            os.makedirs(self.loc.root, exist_ok=True)  # a new store: the lease comes before the dataset
            try:
                with open(self.path, "xb") as fh:
                    fh.write(data)
            except FileExistsError:
                return False
            return True
        if self.loc.fs.exists(self.path):
            return False
        self.loc.fs.pipe_file(self.path, data)
        return True

    def _replace(self) -> None:
        data = json.dumps(self.info, sort_keys=True).encode()
        if self.loc.is_local:
            tmp = f"{self.path}.{self.token}.tmp"
            with open(tmp, "wb") as fh:
                fh.write(data)
            os.replace(tmp, self.path)
        else:
            self.loc.fs.pipe_file(self.path, data)

    # --- protocol ------------------------------------------------------------------------------------
    def acquire(self) -> "Lease":
        for _ in range(3):
            if self._create():
                break
            holder = self._read()
            if holder is None:  # released between our attempt and the read
                continue
            reason = stale_reason(holder)
            if reason is None:
                age = _now() - float(holder.get("heartbeat", 0.0))
                raise StoreBusy(f"store {self.loc.url} is in use by another run ({holder.get('label') or 'tfus'}: "
                                f"host {holder.get('host')}, pid {holder.get('pid')}, since "
                                f"{holder.get('since_utc')}, heartbeat {age:.0f} s ago); wait for it to finish "
                                f"(a lease older than {STALE_AFTER_S:.0f} s without a heartbeat is taken over)")
            log.warning("store %s: taking over the lease of %s (pid %s): %s", self.loc.url, holder.get("host"),
                        holder.get("pid"), reason)
            self._replace()
            time.sleep(0.2)  # another taker at the same moment: the last replace wins, and both re-read
            if (self._read() or {}).get("token") == self.token:
                break
        else:
            holder = self._read() or {}
            raise StoreBusy(f"store {self.loc.url}: could not take its lease (now held by host "
                            f"{holder.get('host')}, pid {holder.get('pid')})")
        self._thread = threading.Thread(target=self._beat, name="tfus-store-lease", daemon=True)
        self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            holder = self._read()
            if not holder or holder.get("token") != self.token:
                self.lost = True
                log.error("store %s: lease lost to %s (pid %s)", self.loc.url, (holder or {}).get("host"),
                          (holder or {}).get("pid"))
                return
            self.info["heartbeat"] = _now()
            self._replace()

    def check(self) -> None:
        """Raise StoreBusy if another run took the lease over (this run stalled past ``STALE_AFTER_S``)."""
        holder = self._read()
        if self.lost or not holder or holder.get("token") != self.token:
            raise StoreBusy(f"store {self.loc.url}: this run lost its lease to another run; not committing")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        holder = self._read()
        if holder and holder.get("token") == self.token:
            if self.loc.is_local:
                os.unlink(self.path)
            else:
                self.loc.fs.rm_file(self.path)

    def __enter__(self) -> "Lease":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def acquire(url_or_loc, label: str = "") -> Lease:
    """Take the lease of the store at ``url_or_loc`` (a URL, path or ``Location``); StoreBusy if held."""
    from tfus.storage.store import Location  # noqa: PLC0415

    loc = url_or_loc if isinstance(url_or_loc, Location) else Location.from_url(url_or_loc)
    return Lease(loc, label).acquire()
