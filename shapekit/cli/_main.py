"""The ``shapekit`` command: one subcommand per module, imported only when it runs.

    shapekit lessons            run every lesson (``shapekit lessons --list`` to see them)
    shapekit <command> --help   what each command does
    eval "$(shapekit completion bash)"   tab completion (zsh: shapekit completion zsh)

Every failure is one line on stderr, ``shapekit COMMAND: what; fix: what to type``, and exit
status 2; Ctrl-C and SIGTERM exit 130 and 143 (training saves a checkpoint first).
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
from collections.abc import Sequence

from ..checking import DataError

# name -> (module, one-line help). Each module has add_arguments(parser) and run(args) -> int.
COMMANDS: dict[str, tuple[str, str]] = {
    "lessons": ("shapekit.cli._cmd_lessons", "list and run the lesson scripts"),
    "train": ("shapekit.cli._cmd_train", "train a row of the lecture's performance log"),
    "sample": ("shapekit.cli._cmd_sample", "print names sampled from a trained run"),
    "reproduce": ("shapekit.cli._cmd_reproduce", "train all five rows and write the results table"),
    "trace": ("shapekit.cli._cmd_trace", "print the per-layer shape table of the lecture's models"),
    "annotate": ("shapekit.cli._cmd_annotate", "write jaxtyping annotations inferred from runs"),
    "completion": ("shapekit.cli._cmd_completion", "print a bash or zsh tab-completion script"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shapekit",
        description="Teach tensor shapes and catch shape bugs in PyTorch.",
        epilog="Run 'shapekit COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        command.set_defaults(_module=module)
        importlib.import_module(module).add_arguments(command)
    return parser


def _version() -> str:
    from .. import __version__

    return f"shapekit {__version__}"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``shapekit`` console script; returns the exit status.

    >>> main(["lessons", "--list", "--dir", "does-not-exist"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    SystemExit: shapekit lessons: no lessons directory at does-not-exist; fix: pass --dir ...
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    previous = _stop_on_sigterm()
    try:
        return importlib.import_module(args._module).run(args)
    except KeyboardInterrupt:
        terminated = _Terminated.received
        print(f"shapekit {args.command}: {'stopped by SIGTERM' if terminated else 'interrupted'}",
              file=sys.stderr)
        return 143 if terminated else 130
    except BrokenPipeError:  # `shapekit lessons --list | head`: the reader has all it wants
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return 141
    except DataError as e:
        return _fail(args.command, str(e))
    except OSError as e:  # a disk full, a directory made read-only mid-run
        where = f"{e.filename}: " if e.filename else ""
        return _fail(args.command, f"{where}{e.strerror or e}; expected a readable and writable "
                     "path; fix: check the path and its permissions, or pass another --out")
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _fail(command: str, message: str) -> int:
    from ..lecture.runs import for_command_line

    print(f"shapekit {command}: {for_command_line(message)}", file=sys.stderr)
    return 2


class _Terminated:
    received = False


def _stop_on_sigterm():
    """SIGTERM raises ``KeyboardInterrupt`` like Ctrl-C (training defers both to the end of its
    step and saves); returns the handler to restore, or ``None`` when SIGTERM is left alone."""
    def handle(signum, frame):
        _Terminated.received = True
        raise KeyboardInterrupt

    main_thread = threading.current_thread() is threading.main_thread()
    if main_thread and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        _Terminated.received = False
        return signal.signal(signal.SIGTERM, handle)
    return None


if __name__ == "__main__":
    sys.exit(main())
