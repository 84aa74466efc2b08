"""The ``shapekit`` command: one subcommand per module, imported only when it runs.

    shapekit lessons            run every lesson (``shapekit lessons --list`` to see them)
    shapekit <command> --help   what each command does
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# name -> (module, one-line help). Each module has add_arguments(parser) and run(args) -> int.
COMMANDS: dict[str, tuple[str, str]] = {
    "lessons": ("shapekit._lessons", "list and run the lesson scripts"),
    "train": ("shapekit._cmd_train", "train a row of the lecture's performance log"),
    "sample": ("shapekit._cmd_sample", "print names sampled from a trained run"),
    "reproduce": ("shapekit._cmd_reproduce", "train all five rows and write the results table"),
    "trace": ("shapekit._cmd_trace", "print the per-layer shape table of the lecture's models"),
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
    from . import __version__

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
    try:
        return importlib.import_module(args._module).run(args)
    except KeyboardInterrupt:
        print(f"shapekit {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
