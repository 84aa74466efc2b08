"""``shapekit annotate``: write the annotations inferred from observed runs into a package.

    pytest --shapekit-infer=mypkg      # run the tests, recording shapes (.shapekit/)
    shapekit annotate mypkg            # the annotations as a unified diff
    shapekit annotate mypkg --report   # ... and the evidence for every choice
    shapekit annotate mypkg --write    # rewrite the source (formatting and comments kept)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..annotate import DEFAULT_PATH


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Infer jaxtyping annotations from the shapes observed by 'pytest --shapekit-infer=PKG' "
        "(or shapekit.observe) and print them as a unified diff, or write them into the source "
        "with --write. Functions that already have jaxtyping annotations are checked against the "
        "observations and left as they are."
    )
    parser.epilog = "example: pytest --shapekit-infer=mypkg && shapekit annotate mypkg --write"
    parser.add_argument("packages", nargs="+", metavar="PKG",
                        help="the packages to annotate (import names, e.g. mypkg)")
    parser.add_argument("--write", action="store_true",
                        help="rewrite the source files instead of only printing the diff")
    parser.add_argument("--report", action="store_true",
                        help="after the diff, list each inferred annotation with its evidence "
                        "(calls seen, sizes seen, why each dim is written as it is)")
    parser.add_argument("--observations", metavar="PATH", default=str(DEFAULT_PATH),
                        help=f"the observations file (default: {DEFAULT_PATH}, where "
                        "'pytest --shapekit-infer' leaves it)")


def _fail(message: str) -> int:
    print(f"shapekit annotate: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    """Print the diff (and the report); write it with ``--write``. Exit 2 with one line on a
    missing or foreign observations file, a package that was not observed or a missing source."""
    from ..annotate import Observations, infer, select
    from ..checking import PACKAGE_NAME

    bad = [p for p in args.packages if not PACKAGE_NAME.match(p)]
    if bad:
        return _fail(f"{bad[0]!r} is not a package name; expected an import name such as "
                     "mypkg or mypkg.models; fix: shapekit annotate mypkg")
    path = Path(args.observations)
    first = args.packages[0]
    if not path.is_file():
        return _fail(f"no observations at {path}; expected the file that 'pytest "
                     f"--shapekit-infer={first}' writes in the directory it runs in; fix: run "
                     f"pytest --shapekit-infer={first} here first, or pass --observations PATH")
    try:
        observations = Observations.load(path)
    except (ValueError, KeyError, TypeError, json.JSONDecodeError) as e:
        return _fail(f"{path} cannot be read as observations ({e}); expected a file written by "
                     f"pytest --shapekit-infer; fix: delete it and run pytest "
                     f"--shapekit-infer={first} again")
    seen = sorted({r.module.split(".")[0] for r in observations.functions.values()})
    for package in args.packages:
        if not any(r.module == package or r.module.startswith(package + ".")
                   for r in observations.functions.values()):
            held = ", ".join(seen) or "no calls at all"
            return _fail(f"no calls into {package!r} were observed ({path} holds {held}); "
                         f"expected calls recorded by pytest --shapekit-infer={package}; fix: "
                         f"run pytest --shapekit-infer={package} (tests that call into it)")
    found = infer(select(observations, args.packages))
    missing = sorted({i.record.file for i in found.values()
                      if i.annotated and not Path(i.record.file).is_file()})
    if missing:
        return _fail(f"the source file {missing[0]} that was observed is gone; expected the "
                     "package where the tests ran; fix: run pytest --shapekit-infer again")
    for item in found.values():
        for text in item.disagreements:
            print(f"shapekit annotate: {item.record.key}: {text}", file=sys.stderr)
    from ..annotate import plan_changes

    try:
        changes = plan_changes(found)
    except Exception as e:  # libcst could not parse a file: it changed since it was observed
        return _fail(f"cannot rewrite the source ({type(e).__name__}: {str(e).splitlines()[0]}); "
                     "expected the package as it was observed; fix: fix the syntax error, then "
                     "run pytest --shapekit-infer again")
    for change in changes:
        sys.stdout.write(change.diff())
    if args.report:
        print("\n\n".join(item.report() for item in found.values()))
    functions = sum(len(c.functions) for c in changes)
    if not changes:
        print("shapekit annotate: nothing to change: every observed function that handles "
              "tensors is annotated", file=sys.stderr)
    elif args.write:
        for change in changes:
            change.write()
        print(f"shapekit annotate: annotated {functions} function{'s' * (functions != 1)} in "
              f"{len(changes)} file{'s' * (len(changes) != 1)}", file=sys.stderr)
    else:
        print(f"shapekit annotate: {functions} function{'s' * (functions != 1)} to annotate; "
              "write them with --write", file=sys.stderr)
    return 0
