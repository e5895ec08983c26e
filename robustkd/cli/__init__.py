"""The ``robustkd`` command line: a thin shell over the library (docs/architecture.md).

One module per command group parses its flags, calls one job (robustkd/jobs/) or library function, and
prints. Errors print one line on stderr and exit non-zero: 2 for a bad input (``robustkd: error: ...``),
3 for a bug (with the traceback), 130 for an interrupt.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from robustkd import __version__
from robustkd.cli import corrupt, distill, evaluate, import_model, info, results, study, train
from robustkd.cli.common import EXIT_INTERNAL_ERROR, EXIT_USER_ERROR, OneLineErrors
from robustkd.errors import RobustKDError
from robustkd.utils.threads import avoid_spin_waiting

__all__ = ["EXIT_INTERNAL_ERROR", "EXIT_USER_ERROR", "build_parser", "main", "os_error_message"]

COMMAND_GROUPS = (info, import_model, train, distill, evaluate, corrupt, results, study)


def os_error_message(exc: OSError) -> str:
    """``<path>: <reason>`` of an OSError (both paths of a failed rename or copy)."""
    paths = [str(name) for name in (exc.filename, exc.filename2) if name is not None]
    reason = exc.strerror or str(exc)
    return f"{' -> '.join(paths)}: {reason}" if paths else reason


def build_parser() -> OneLineErrors:
    parser = OneLineErrors(prog="robustkd", description="Distil small image classifiers and measure their robustness.")
    parser.add_argument("--version", action="version", version=f"robustkd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for group in COMMAND_GROUPS:
        group.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    if avoid_spin_waiting() and sys.stderr.isatty():  # before any command loads torch (robustkd/utils/threads.py)
        print("robustkd: note: the machine is busy; OpenMP threads will wait passively (OMP_WAIT_POLICY=PASSIVE; "
              "set it yourself to choose)", file=sys.stderr)
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except RobustKDError as exc:
        print(f"robustkd: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as exc:  # an unreadable input or unwritable output: the path and the reason, no traceback
        print(f"robustkd: error: {os_error_message(exc)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Exception:  # a bug: the traceback is for the report, and the last line says so
        import traceback

        traceback.print_exc()
        print(f"robustkd: internal error in '{args.command}' (a bug, not a bad input): please report it with the "
              "traceback above", file=sys.stderr)
        return EXIT_INTERNAL_ERROR
    except KeyboardInterrupt:
        hint = ("run the same command again to resume" if args.command in ("evaluate", "corrupt", "study")
                else "nothing was written under --out; run the same command again" if args.command == "import"
                else "resume with --resume --run-dir <run>")
        print(f"robustkd: interrupted; {hint}", file=sys.stderr)
        return 130
