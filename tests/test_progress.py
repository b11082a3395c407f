"""Tests for fastconv.progress.Progbar and the ProgbarLogger that draws it: in an 80-column
terminal emulator (pyte, skipped without it) no line ever wraps and the final screen holds
one "Epoch k/n" line and one bar line per epoch; into a file or pipe, one line per epoch;
verbose=2 and 0; Jupyter's \\r redraws; throttling; the number formats."""
import io
import sys
import types

import pytest

from fastconv import callbacks as C
from fastconv.progress import Progbar, _format_duration, _format_per_unit, _format_value

LONG_LOGS = {"loss": 0.123456, "accuracy": 0.9612, "top_k_categorical_accuracy": 0.99, "precision": 0.5,
             "val_loss": 0.2, "val_accuracy": 0.95, "val_top_k_categorical_accuracy": 0.98}


class Terminal:
    """A tty whose output goes into a pyte screen of ``columns`` x 24."""

    def __init__(self, pyte, columns=80):
        self.screen = pyte.Screen(columns, 24)
        self.stream = pyte.Stream(self.screen)
        self.written = []

    def write(self, text):
        self.written.append(text)
        self.stream.feed(text.replace("\n", "\r\n"))   # what a tty's line discipline does (onlcr)

    def flush(self):
        pass

    def isatty(self):
        return True

    def rows(self):
        return [row.rstrip() for row in self.screen.display]


def fit_like(stream, epochs=2, steps=50, verbose=1):
    """What a fit loop does with ProgbarLogger; each step's redraw is let through."""
    logger = C.ProgbarLogger(stream=stream)
    cbs = C.CallbackList([logger], verbose=verbose, epochs=epochs, steps=steps)
    cbs.on_train_begin()
    for epoch in range(epochs):
        cbs.on_epoch_begin(epoch)
        if logger.progbar is not None:
            logger.progbar.interval = 0.0
        for step in range(steps):
            cbs.on_train_batch_end(step, {k: v for k, v in LONG_LOGS.items() if not k.startswith("val_")})
        cbs.on_epoch_end(epoch, dict(LONG_LOGS))
    cbs.on_train_end()


def test_terminal_lines_never_wrap(monkeypatch):
    pyte = pytest.importorskip("pyte", reason="pyte (a terminal emulator) is not installed")
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("LINES", "24")
    term = Terminal(pyte)
    fit_like(term, epochs=2, steps=50)
    rows = term.rows()
    assert rows[0] == "Epoch 1/2" and rows[2] == "Epoch 2/2"
    for row in (rows[1], rows[3]):
        assert row.startswith("50/50 [") and "/step - loss: 0.1235" in row and len(row) <= 79
    assert all(row == "" for row in rows[4:]), rows       # nothing wrapped onto further rows
    # every line drawn fits: the longest piece between \r / \n is at most 79 characters
    pieces = "".join(term.written).replace("\n", "\r").split("\r")
    assert max(len(p) for p in pieces) <= 79
    assert sum("\r" in w for w in term.written) >= 50      # it was redrawn in place


def test_terminal_mid_epoch_screen():
    pyte = pytest.importorskip("pyte", reason="pyte (a terminal emulator) is not installed")
    term = Terminal(pyte, columns=100)
    bar = Progbar(469, stream=term, width=100, interval=0.0, title="Epoch 3/10")
    for step in range(1, 201):
        bar.update(step, {"loss": 0.5, "accuracy": 0.875})
    rows = term.rows()
    assert rows[0] == "Epoch 3/10"
    assert rows[1].startswith("200/469 [===========>......") and " - ETA: " in rows[1]
    assert rows[1].endswith(" - loss: 0.5000 - accuracy: 0.8750") and rows[2] == ""
    bar.update(469, {"loss": 0.5, "accuracy": 0.875})
    bar.finish({"loss": 0.25})
    rows = term.rows()
    assert rows[1].startswith("469/469 [==============================] - ")
    assert rows[1].endswith("/step - loss: 0.2500")        # the longer old line is blanked out
    assert "accuracy" not in rows[1]


def test_narrow_terminal_shrinks_the_bar_then_drops_metrics():
    stream = io.StringIO()
    stream.isatty = lambda: True
    bar = Progbar(100, stream=stream, width=60, interval=0.0)
    bar.update(50, LONG_LOGS)
    line = stream.getvalue().split("\r")[-1]
    assert len(line) <= 59 and line.startswith(" 50/100 [")
    assert " - loss: 0.1235" in line and "val_top_k" not in line
    cells = line[line.index("[") + 1:line.index("]")]
    assert 10 <= len(cells) < 30
    tiny = io.StringIO()
    tiny.isatty = lambda: True
    Progbar(100, stream=tiny, width=12, interval=0.0).update(5, LONG_LOGS)
    assert max(len(p) for p in tiny.getvalue().split("\r")) <= 11


def test_file_output_is_one_line_per_epoch():
    stream = io.StringIO()
    fit_like(stream, epochs=3, steps=40)
    text = stream.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 3 and text.endswith("\n")
    for k, line in enumerate(lines, 1):
        assert line.startswith(f"Epoch {k}/3 - 40/40 [==============================] - ")
        assert line.endswith(" - val_top_k_categorical_accuracy: 0.9800")   # not cut in a file


def test_verbose_2_and_0():
    stream = io.StringIO()
    fit_like(stream, epochs=2, steps=10, verbose=2)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and "[" not in stream.getvalue()
    assert lines[1].startswith("Epoch 2/2 - 10/10 - ") and "/step - loss: 0.1235" in lines[1]
    quiet = io.StringIO()
    fit_like(quiet, epochs=2, steps=10, verbose=0)
    assert quiet.getvalue() == ""
    # one epoch: no "Epoch 1/1" heading, as in Keras
    single = io.StringIO()
    fit_like(single, epochs=1, steps=4)
    assert single.getvalue().startswith("4/4 [")
    with pytest.raises(ValueError, match="verbose must be 0, 1 or 2"):
        Progbar(10, verbose=3)


def test_jupyter_redraws_with_carriage_returns(monkeypatch):
    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))

    class OutStream(io.StringIO):   # what ipykernel puts in sys.stdout (not a tty)
        pass

    OutStream.__module__ = "ipykernel.iostream"
    stream = OutStream()
    bar = Progbar(20, stream=stream, interval=0.0, title="Epoch 1/2")
    for step in range(1, 21):
        bar.update(step, LONG_LOGS)
    bar.finish(LONG_LOGS)
    text = stream.getvalue()
    assert text.startswith("Epoch 1/2\n\r") and text.count("\r") == 21 and text.endswith("\n")
    assert text.rstrip("\n").split("\r")[-1].endswith("val_top_k_categorical_accuracy: 0.9800")


def test_redraws_are_throttled():
    stream = io.StringIO()
    stream.isatty = lambda: True
    bar = Progbar(1000, stream=stream, width=120, interval=60.0)
    for step in range(1, 1001):
        bar.update(step, {"loss": 1.0})
    assert stream.getvalue().count("\r") == 1      # the first update only
    bar.finish()
    assert stream.getvalue().count("\r") == 2 and stream.getvalue().endswith("\n")
    bar.finish()                                   # a second finish writes nothing
    assert stream.getvalue().count("\n") == 1


def test_unknown_target_and_formats():
    stream = io.StringIO()
    bar = Progbar(None, stream=stream, verbose=2)
    bar.update(57, {"loss": 1e-5})
    bar.finish()
    line = stream.getvalue()
    assert line.startswith("57/57 - ") and line.endswith(" - loss: 1.0000e-05\n")
    assert _format_value(0.5) == "0.5000" and _format_value(3) == "3" and _format_value("x") == "x"
    assert _format_value(float("nan")) == "nan"
    assert _format_duration(7.2) == "7s" and _format_duration(65) == "1:05" and _format_duration(3723) == "1:02:03"
    assert _format_per_unit(2.0, "step") == "2s/step" and _format_per_unit(0.004, "step") == "4ms/step"
    assert _format_per_unit(5e-5, "sample") == "50us/sample"
