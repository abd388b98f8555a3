"""The ``tfus`` command line: a thin dispatcher.

Each command group lives in its own module with a ``register(subparsers)`` function; a command parses its
arguments and calls one typed function of a package or flow (imported lazily inside the handler, so that
``tfus simulate`` does not pay for importing Prefect or torch). Handlers return an exit code.

User errors (``ValueError``, ``FileNotFoundError``, :class:`UserError`) print one line, ``error: ...``, and
exit with status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys

# Command-group modules, in help order. Each defines register(subparsers).
COMMAND_MODULES = (
    "tfus.flows.cli.sim_cmds",       # phantom, simulate, validate
    "tfus.flows.cli.storage_cmds",   # query, show, export, stats, import-tfuscapes
    "tfus.flows.cli.flow_cmds",      # generate
    "tfus.flows.cli.model_cmds",     # train, evaluate, predict
    "tfus.flows.cli.serve_cmds",     # serve, request
    "tfus.flows.cli.demo_cmds",      # demo
)

# Prefect's telemetry would try the network; tfus never does.
_QUIET_ENV = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
}


class UserError(Exception):
    """An error caused by the user's input; printed as one line without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tfus",
        description="Transcranial focused ultrasound: simulate, build datasets, train and serve DeepTFUS.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a real import error inside the module
                raise
            continue
        module.register(sub)
    return parser


@contextlib.contextmanager
def _env_default(key: str, value: str):
    """``os.environ[key] = value`` unless set, for the processes started while the command runs; removed
    afterwards, so that ``main()`` called in-process (tests, notebooks) leaves the environment as it was."""
    if key in os.environ:
        yield
        return
    os.environ[key] = value
    try:
        yield
    finally:
        os.environ.pop(key, None)


def main(argv: list[str] | None = None) -> int:
    for key, value in _QUIET_ENV.items():
        os.environ.setdefault(key, value)
    parser = build_parser()
    args = parser.parse_args(argv)
    # Dask's own INFO chatter (scheduler/nanny start-up of the clusters a command starts) drowns the
    # progress bars; it only reaches those processes through their environment.
    with _env_default("DASK_LOGGING__DISTRIBUTED", "info" if args.verbose else "warning"):
        return _run(parser, args)


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except (UserError, ValueError, FileNotFoundError, NotADirectoryError, FileExistsError) as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
