"""tfus.flows.runtime: the embedded Prefect server's settings, read back from the running server's API."""

from __future__ import annotations

import httpx


def test_embedded_server_runs_without_its_idle_loop_services(prefect_api):
    services = httpx.get(f"{prefect_api}/admin/settings", timeout=30).json()["server"]["services"]
    enabled = {name: s.get("enabled") for name, s in services.items() if isinstance(s, dict)}
    # Off: loops tfus never needs, which took CPU from simulations (docs/PERFORMANCE.md).
    assert not any(enabled[n] for n in ("scheduler", "late_runs", "foreman", "pause_expirations",
                                        "repossessor", "triggers"))
    # On: what records the runs users look at (task runs arrive as events).
    assert enabled["task_run_recorder"] and enabled["event_persister"]
