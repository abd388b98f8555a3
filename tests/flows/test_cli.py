"""The ``tfus`` dispatcher itself: exit codes and what it leaves behind in the calling process."""

from __future__ import annotations

import os

import tfus.flows.cli as cli
from tfus.flows.cli import main


def test_in_process_main_leaves_no_dask_logging_setting(monkeypatch):
    monkeypatch.delenv("DASK_LOGGING__DISTRIBUTED", raising=False)
    seen = {}

    def handler(args):
        seen["during"] = os.environ.get("DASK_LOGGING__DISTRIBUTED")
        return 0

    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    parser.set_defaults(handler=handler)
    assert main([]) == 0
    assert seen["during"] == "warning"  # processes the command starts see it
    assert "DASK_LOGGING__DISTRIBUTED" not in os.environ  # the caller's environment is restored


def test_user_setting_is_kept(monkeypatch):
    monkeypatch.setenv("DASK_LOGGING__DISTRIBUTED", "debug")
    assert main([]) == 2  # no command: help, exit 2
    assert os.environ["DASK_LOGGING__DISTRIBUTED"] == "debug"


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["query", str(tmp_path / "missing.zarr")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "missing.zarr" in err[0]


def test_a_prefect_server_that_is_down_is_one_line_for_every_command_that_needs_it(tmp_path, capsys,
                                                                                  monkeypatch):
    """PREFECT_API_URL pointing at nothing: the URL and what to do, exit 2, before any work (no store made)."""
    from tfus.flows.runtime import free_port

    url = f"http://127.0.0.1:{free_port()}/api"
    monkeypatch.setenv("PREFECT_API_URL", url)
    store = tmp_path / "ds.zarr"
    for argv in (["generate", "--subjects", "phantom:1", "--store", str(store), "--placements", "1"],
                 ["request", "predict", "--ct", str(tmp_path / "head.nii.gz"), "--position", "0", "0", "0",
                  "--target", "0", "0", "1"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and url in err[0] and "unset PREFECT_API_URL" in err[0], err
    assert not store.exists()
