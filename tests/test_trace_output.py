"""Every place a trace is read: CSV, JSON, HTML (notebooks), Markdown and rich with the chosen
columns, the explained failure of a plain torch model, and the CLI's --depth, --columns, --format,
--meta."""

from __future__ import annotations

import csv
import io
import json
from html.parser import HTMLParser

import pytest
import torch
from _lecture import one_thread  # noqa: F401 (autouse fixture)
from _lecture_classes import wavenet

from shapekit import ShapeError, explain
from shapekit.cli._main import main
from shapekit.debug._trace import trace


def idx(batch: int = 4, block: int = 8) -> torch.Tensor:
    return torch.randint(0, 27, (batch, block), generator=torch.Generator().manual_seed(0))


def broken_torch_model() -> torch.nn.Sequential:
    return torch.nn.Sequential(torch.nn.Linear(10, 20), torch.nn.ReLU(), torch.nn.Linear(30, 5))


def test_plain_torch_failure_carries_explains_diagnosis():
    model, x = broken_torch_model(), torch.ones(2, 10)
    t = trace(model, x)
    with pytest.raises(ShapeError) as oracle, explain():
        model(x)
    expected = str(oracle.value).splitlines()
    got = t.failed_row.diagnosis.splitlines()
    # explain() names the user's line and the module ("test_x.py:42 model.2"); the row has the path.
    assert expected[0].endswith(got[0]) and got[0].startswith("Linear(30, 5) expected input: ")
    assert got[1:] == expected[1:]
    assert t.failed_row.path == "2" and isinstance(t.explanation, ShapeError)
    assert "  fix: the input has 20 features: build nn.Linear(20, 5)" in str(t)


def test_csv_has_a_line_per_row_with_raw_numbers():
    t = trace(wavenet(), idx(), columns=["input", "output", "params", "flops"])
    lines = list(csv.reader(io.StringIO(t.to_csv())))
    assert lines[0] == ["path", "type", "depth", "input", "output", "params", "flops", "error"]
    assert len(lines) == 1 + len(t.rows)
    assert lines[3] == ["layers[1]", "FlattenConsecutive", "1", "(4, 8, 24)", "(4, 4, 48)", "0",
                        "0", ""]
    assert lines[4][5:7] == ["6144", str(2 * 4 * 4 * 48 * 128)]


def test_json_round_trips_the_rows_and_totals():
    t = trace(broken_torch_model(), torch.ones(2, 10), columns=["output", "params", "memory"])
    data = json.loads(t.to_json())
    assert data["total_params"] == 375 and data["failed"] and data["model"] == "Sequential"
    assert data["error"].startswith("RuntimeError: mat1 and mat2 shapes cannot be multiplied")
    assert data["explanation"] == str(t.explanation)
    assert [row["path"] for row in data["rows"]] == ["", "0", "1", "2"]
    assert data["rows"][1]["output_shapes"] == [[2, 20]] and data["rows"][3]["failed"]
    assert data["memory"]["params"] == 375 * 4


class Cells(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.inside = False

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append([])
        self.inside = tag in ("td", "th")
        if self.inside:
            self.rows[-1].append("")

    def handle_endtag(self, tag):
        self.inside = False

    def handle_data(self, data):
        if self.inside:
            self.rows[-1][-1] += data


def test_html_for_notebooks():
    t = trace(broken_torch_model(), torch.ones(2, 10))
    page = t._repr_html_()
    assert page == t.to_html() and page.startswith('<div class="shapekit-trace"><table>')
    cells = Cells()
    cells.feed(page)
    assert cells.rows[0] == ["layer", "input", "output", "params"]  # dims: empty, left out
    assert cells.rows[4][0].endswith("✗ 2 Linear") and cells.rows[4][2] == "raised RuntimeError"
    assert "fix: the input has 20 features" in page and "<script" not in page


def test_markdown_and_rich_follow_the_columns():
    from rich.console import Console

    t = trace(wavenet(), idx(), columns=["output", "params", "flops"])
    text = t.to_markdown()
    assert text.startswith("| layer | output | params | flops |\n|---|---|---:|---:|\n")
    assert "| &nbsp;&nbsp;`layers[2]` Linear | (4, 4, 128) | 6,144 | 196,608 |" in text
    console = Console(file=io.StringIO(), width=200)
    console.print(t)
    shown = console.file.getvalue()
    assert "flops" in shown and "196,608" in shown and "FLOPs: 1.01 M" in shown


def test_cli_depth_columns_format_meta(capsys):
    assert main(["trace", "--batch", "2", "--depth", "0", "--columns", "output,params,flops",
                 "--format", "csv", "--meta"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("# n_embd 24, n_hidden 128 (row 5, --model wavenet")
    assert out[1:3] == ["path,type,depth,output,params,flops,error",
                        ",Sequential,0,\"(2, 27)\",76579,505344,"]
    assert main(["trace", "--batch", "2", "--format", "json", "--demo-bug"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["failed"] and data["rows"][-1]["error"].startswith("ShapeError: layers[2] Linear")
    assert main(["trace", "--batch", "2", "--format", "text", "--columns", "output,memory"]) == 0
    assert "forward/backward adds" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["trace", "--columns", "flop"])
    assert "got 'flop'; e.g. --columns input,output,params,flops" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["trace", "--depth", "-1"])
    assert "expected an integer >= 0, got -1; fix: e.g. 0" in capsys.readouterr().err
