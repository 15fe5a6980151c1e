"""The ``livelearn`` command line: ``demo``, ``replay``, ``predict``, ``inspect``.

Run ``livelearn --help`` (or ``python -m livelearn --help``) and ``livelearn
COMMAND --help``. Exit codes: 0 success, 1 runtime error (unreadable file, damaged
checkpoint), 2 usage error (bad option, missing column); errors are one line on
stderr, with the traceback only under ``--verbose``.

One module per command (:mod:`~livelearn.cli.demo`, :mod:`~livelearn.cli.replay`,
:mod:`~livelearn.cli.predict`, :mod:`~livelearn.cli.inspect`), each with an
``add_parser`` and a ``run``, over :mod:`livelearn.cli.common`; the scoring is the
library's :mod:`livelearn.evaluate`.

Example:
    >>> main(["inspect", "--help"])  # doctest: +ELLIPSIS
    usage: livelearn inspect [-h] [-v] [--json] CHECKPOINT
    ...
    0
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import traceback
from collections.abc import Sequence

import livelearn
from livelearn import CheckpointError
from livelearn.cli import demo, inspect, predict, replay
from livelearn.cli.common import PLOT_HINT, Parser, UsageError, plot_curves
from livelearn.logfiles import ColumnError, LogError

__all__ = ["PLOT_HINT", "UsageError", "build_parser", "main", "plot_curves"]


def build_parser() -> argparse.ArgumentParser:
    """The ``livelearn`` argument parser (exposed for documentation tools)."""
    common = Parser(add_help=False)
    common.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="log details and show tracebacks on errors",
    )
    parser = Parser(
        prog="livelearn",
        description="Learn live from user interactions: replay logs through a livelearn "
        "Engine, predict, and inspect checkpoints.",
        epilog="Run 'livelearn COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"livelearn {livelearn.__version__}")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=False,
        help="log details and show tracebacks on errors",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True

    for command in (demo, replay, predict, inspect):
        command.add_parser(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0, 1 runtime error, 2 usage error).

    Example:
        >>> main(["--version"])  # doctest: +ELLIPSIS
        livelearn ...
        0
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 2)
    verbose = bool(getattr(args, "verbose", False))
    log = logging.getLogger("livelearn")
    if verbose:
        logging.basicConfig(level=logging.INFO, format="livelearn: %(levelname)s %(message)s")
        log.setLevel(logging.INFO)
    else:
        log.setLevel(logging.ERROR)
    prog = f"livelearn {args.command}"
    try:
        status: int = args.handler(args)
        return status
    except BrokenPipeError:  # e.g. `livelearn predict ... | head`: the reader left
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # no second error at exit
        return 0
    except (UsageError, ColumnError) as exc:
        _error(prog, str(exc), verbose)
        return 2
    except (CheckpointError, LogError, OSError, ValueError, RuntimeError) as exc:
        message = str(exc)
        if isinstance(exc, OSError) and exc.filename is not None:
            message = f"{exc.filename}: {exc.strerror or exc}"
        _error(prog, message, verbose)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        _error(prog, f"unexpected {type(exc).__name__}: {exc}", verbose)
        return 1


def _error(prog: str, message: str, verbose: bool) -> None:
    if verbose:
        traceback.print_exc()
    text = " ".join(message.split())  # one line
    print(f"{prog}: error: {text}", file=sys.stderr)
