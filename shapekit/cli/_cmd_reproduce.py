"""``shapekit reproduce``: train the five rows of the lecture's performance log, write the table.

    shapekit reproduce                               all five rows, 200,000 steps each (~45 min)
    shapekit reproduce --rows 4,5 --steps 20000 --out runs/quick
    shapekit reproduce --publish docs/results        no training: table and plots into the docs

Each row trains in ``OUT/<row name>/`` (a normal ``shapekit train`` run directory). Rows already
finished there are skipped and an interrupted row is resumed, so rerunning the same command after
Ctrl-C continues where it stopped. Then ``OUT/table.md``, ``OUT/table.json`` and
``OUT/loss_curves.png`` are written from every finished row.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from ._argtypes import nonneg_int, positive_int

COLUMNS = ("model", "params", "train", "val", "lecture train", "lecture val", "val diff", "steps",
           "minutes")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=positive_int, default=200_000, metavar="N",
                        help="SGD steps per row (200000, the lecture's)")
    parser.add_argument("--rows", default="1,2,3,4,5", metavar="LIST",
                        help="rows to train, by number or name, comma-separated (all five)")
    parser.add_argument("--out", default="runs/reproduce", metavar="DIR",
                        help="where the row runs and the table go (runs/reproduce)")
    parser.add_argument("--data", metavar="PATH", help="names file (default: as 'shapekit train')")
    parser.add_argument("--threads", type=positive_int, default=1, help="torch threads (1)")
    parser.add_argument("--eval-every", type=nonneg_int, default=10_000, metavar="N",
                        help="validation loss every N steps, drawn on the loss curves (10000; "
                        "0: only at the end)")
    parser.add_argument("--publish", metavar="DIR",
                        help="train nothing: write the table from the finished rows in --out and "
                        "copy table.md, table.json and the loss PNGs into DIR (e.g. docs/results)")


def run(args: argparse.Namespace) -> int:
    """Train the rows, then write the table; a ``DataError`` is one line and exit 2 (``main``)."""
    from ..checking import DataError
    from ..lecture.runs import resolve_row

    try:
        specs = [resolve_row(r) for r in args.rows.split(",") if r.strip()]
    except ValueError as e:
        raise DataError(f"--rows {args.rows}: {e}") from None
    out = Path(args.out)
    if args.publish:
        return _publish(out, specs, Path(args.publish))
    from ..lecture.runs import run_lock

    data = f" --data {args.data}" if args.data else ""
    hint = (f"shapekit reproduce --rows {args.rows} --steps {args.steps} --out {out}{data} "
            "(finished rows are skipped)")
    names = []  # loaded once, by the first row that trains
    for spec in specs:
        with run_lock(out / spec.name, command="shapekit reproduce"):
            code = _row(spec, out / spec.name, args, names, hint)
        if code:
            return code
    write_table(out)
    print((out / "table.md").read_text(encoding="utf-8"))
    return 0


def _row(spec, run_dir: Path, args: argparse.Namespace, names: list, hint: str) -> int:
    """Train (or resume, or skip) one row in ``run_dir``, whose lock the caller holds."""
    from ..lecture.runs import CHECKPOINT, CONFIG, METRICS, make_config, read_config, read_metrics
    from ._cmd_train import _names, check_same_data, train_in

    config = read_config(run_dir) if (run_dir / CONFIG).is_file() else None
    metrics = read_metrics(run_dir, config) if config is not None else {}
    if metrics.get("finished") and metrics.get("steps") == args.steps:
        print(f"row {spec.row} {spec.name}: already finished in {run_dir}, skipping")
        return 0
    if not names:
        names.append(_names(args.data, None, run_dir))
    resume = (config is not None and config.get("steps") == args.steps
              and (run_dir / CHECKPOINT).is_file())
    if resume:
        config.update(threads=args.threads)
        check_same_data(names[0], config["data"]["sha256"], run_dir, args.data)
    else:
        for stale in (METRICS, CHECKPOINT, CONFIG):  # a run of another length: start afresh
            (run_dir / stale).unlink(missing_ok=True)
        config = make_config(spec, names[0], data_path=args.data, steps=args.steps,
                             threads=args.threads, eval_every=args.eval_every)
    return train_in(run_dir, config, names[0], resume=resume,
                    command=f"shapekit reproduce [row {spec.row}]", resume_hint=hint)


def _publish(out: Path, specs: list, dest: Path) -> int:
    """Publishing trains nothing (a run may still be training in ``out``): it refuses until every
    requested row is finished."""
    from ..checking import DataError

    # The published table names the default run directory: a path of this machine means nothing
    # to a reader (and would leak into the docs).
    rows = write_table(out, portable=True) if out.is_dir() else []
    missing = [s.name for s in specs if s.name not in {r["model"] for r in rows}]
    if missing:
        raise DataError(
            f"--publish: row(s) {', '.join(missing)} not finished in {out}; expected a finished "
            "run for every row in --rows; fix: finish them with the same command without "
            "--publish, or publish fewer --rows"
        )
    print((out / "table.md").read_text(encoding="utf-8"))
    publish(out, dest)
    return 0


def write_table(out: Path, *, portable: bool = False) -> list[dict]:
    """Write ``table.md``, ``table.json`` and ``loss_curves.png`` in ``out`` from every finished
    row directory in it; returns the table's rows. The table's "Regenerate" command names
    ``--out``, unless ``portable`` and ``out`` is an absolute path (of this machine)."""
    from ..lecture import ROWS
    from ..lecture.runs import atomic_write, load_checkpoint, plot_curves, read_json, write_json

    rows, curves, val, configs = [], {}, {}, []
    for spec in ROWS.values():
        path = out / spec.name / "metrics.json"
        if not path.is_file():
            continue
        m = read_json(path, "metrics")
        if not m.get("finished"):
            continue
        configs.append(read_json(out / spec.name / "config.json", "config"))
        rows.append({
            "row": spec.row, "model": spec.name, "description": spec.description,
            "params": m["params"], "train": round(m["train_loss"], 4),
            "val": round(m["val_loss"], 4), "lecture_train": spec.lecture_train,
            "lecture_val": spec.lecture_val, "val_diff": round(m["val_loss"] - spec.lecture_val, 4),
            "steps": m["steps_done"], "minutes": round(m["wall_seconds"] / 60, 1),
            "threads": m["threads"], "torch": m["torch"], "data_sha256": m["data_sha256"],
            "data_source": m.get("data_source"),
        })
        curves[spec.name] = load_checkpoint(out / spec.name).lossi
        val[spec.name] = [(e["step"], e["val"]) for e in m.get("evals", [])]
    steps = sorted({r["steps"] for r in rows}) or [200_000]
    flag = "" if steps == [200_000] else f" --steps {steps[0]}"
    if not (portable and out.is_absolute()):
        flag += f" --out {out}"
    per_row = " or ".join(f"{n:,}" for n in steps)
    lines = [
        "# The lecture's performance log, reproduced",
        "",
        f"Regenerate: `shapekit reproduce{flag}` ({per_row} steps per row, lr 0.1 "
        "then 0.01 for the last quarter, batch 32, `torch.manual_seed(42)`).",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for r in rows:
        lines.append(
            f"| {r['description']} | {r['params']:,} | {r['train']:.4f} | {r['val']:.4f} | "
            f"{r['lecture_train']:.3f} | {r['lecture_val']:.3f} | {r['val_diff']:+.4f} | "
            f"{r['steps']:,} | {r['minutes']:.1f} |"
        )
    if rows:
        lines += ["", f"torch {rows[0]['torch']}, {rows[0]['threads']} thread(s), names.txt "
                  f"SHA-256 `{rows[0]['data_sha256']}`."]
    fallback = [r["model"] for r in rows if r["data_source"] == "fallback"]
    if fallback:
        lines += ["", f"**Note:** {', '.join(fallback)} trained on the offline fallback names of "
                  "the `names` package, not makemore's names.txt: those losses are not comparable "
                  "with the lecture's. Rerun with `--data /path/to/names.txt` for the real table."]
    text = "\n".join(lines) + "\n"
    atomic_write(out / "table.md", lambda tmp: tmp.write_text(text, encoding="utf-8"))
    write_json(out / "table.json", {"columns": list(COLUMNS), "rows": rows})
    if curves:
        with_val = {name: points for name, points in val.items() if points}
        what = "training and validation loss" if with_val else "training loss"
        plot_curves(curves, out / "loss_curves.png", f"the lecture's five models: {what}",
                    val=with_val or None)
    return rows


def publish(out: Path, dest: Path) -> None:
    """Copy ``table.md``, ``table.json``, ``loss_curves.png`` and each row's ``loss.png`` (as
    ``<row>-loss.png``) from ``out`` into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("table.md", "table.json", "loss_curves.png"):
        if (out / name).is_file():
            shutil.copyfile(out / name, dest / name)
    for png in sorted(out.glob("*/loss.png")):
        shutil.copyfile(png, dest / f"{png.parent.name}-loss.png")
    print(f"published {out}/table.md, table.json and the loss curves to {dest}")
