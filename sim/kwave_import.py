"""The one place where tfus imports k-wave-python.

k-wave-python 0.6.2 runs a binary download from its package ``__init__`` (``urlretrieve`` of the C++/CUDA
executables from a release server) and raises ``URLError`` when the machine is offline, as compute nodes
usually are. It only tolerates ``TimeoutError`` from that download. tfus uses k-wave-python's Python
backend (``kwave.solvers.kspace_solver``), which needs no binary, so the import here:

* swaps ``urllib.request.urlretrieve`` for a function that raises ``TimeoutError`` for the duration of the
  import, so the package's own "download timed out" path is taken and nothing touches the network;
* keeps that stub bound inside ``kwave`` afterwards, so no later call can start a download either;
* undoes the package's implicit ``logging.basicConfig`` and silences its download warnings.

A user who has the k-Wave C++/CUDA executable passes its path explicitly (``--kwave-binary``); it is never
downloaded. Every other module gets k-wave-python through :func:`kwave_modules`.
"""

from __future__ import annotations

import logging
import sys
import threading
import types
import urllib.request

_LOCK = threading.Lock()


def _refuse_download(url, *args, **kwargs):  # signature of urllib.request.urlretrieve
    raise TimeoutError(f"tfus: k-wave-python binary download refused (offline by design): {url}")


def _import_kwave() -> types.ModuleType:
    if "kwave" in sys.modules:
        return sys.modules["kwave"]
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    original = urllib.request.urlretrieve
    previous_disable = logging.root.manager.disable
    urllib.request.urlretrieve = _refuse_download
    logging.disable(logging.WARNING)  # the package logs one warning per refused binary
    try:
        import kwave  # noqa: PLC0415  (deliberately late: this is the guarded import)
    finally:
        urllib.request.urlretrieve = original
        logging.disable(previous_disable)
        for h in list(root.handlers):
            if h not in handlers:
                root.removeHandler(h)
        root.setLevel(level)
    kwave.urlretrieve = _refuse_download  # never download later either
    return kwave


def kwave_modules() -> types.SimpleNamespace:
    """Import k-wave-python offline and return the pieces tfus uses.

    Returns a namespace with ``kwave`` (the package), ``kgrid`` (``kWaveGrid``), ``karray`` (``kWaveArray``),
    ``solver`` (the Python-backend module ``kwave.solvers.kspace_solver``) and ``mapgen``
    (``kwave.utils.mapgen``, which holds ``focused_bowl_oneil``).
    """
    with _LOCK:
        kwave = _import_kwave()
        from kwave.kgrid import kWaveGrid  # noqa: PLC0415
        from kwave.solvers import kspace_solver  # noqa: PLC0415
        from kwave.utils import mapgen  # noqa: PLC0415
        from kwave.utils.kwave_array import kWaveArray  # noqa: PLC0415
    return types.SimpleNamespace(kwave=kwave, kgrid=kWaveGrid, karray=kWaveArray, solver=kspace_solver,
                                 mapgen=mapgen)
