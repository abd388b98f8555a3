"""Shared fixtures: one real Prefect API server on 127.0.0.1 for the whole test session."""

from __future__ import annotations

import os

import pytest

from tfus.flows.runtime import PrefectServer, prefect_environment

prefect_environment()


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory):
    """A real ``prefect server`` (SQLite) on a free loopback port; exports PREFECT_API_URL for the session.

    Child processes (Dask workers, ``tfus serve``) inherit the URL through the environment.
    """
    previous = os.environ.get("PREFECT_API_URL")
    server = PrefectServer(home=tmp_path_factory.mktemp("prefect-home")).start()
    os.environ["PREFECT_API_URL"] = server.api_url
    try:
        yield server.api_url
    finally:
        from tfus.flows.runtime import _flush_prefect_logs

        _flush_prefect_logs()
        if previous is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = previous
        server.stop()
