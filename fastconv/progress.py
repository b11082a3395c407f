"""Progress output for training: the Keras-style ``Progbar``.

What a fit loop prints with Progbar, as Keras does:

    verbose=1 on a terminal or in Jupyter, one line redrawn in place (at most ten times a
    second), then left as the epoch's record:
        Epoch 3/10
        469/469 [==============================] - 2s 4ms/step - loss: 0.1234 - accuracy: 0.9612
    verbose=1 into a file or a pipe, and verbose=2 anywhere: ONE line per epoch, written when
    the epoch ends (a log file must not fill with redraws):
        Epoch 3/10 - 469/469 [==============================] - 2s 4ms/step - loss: 0.1234
        Epoch 3/10 - 469/469 - 2s 4ms/step - loss: 0.1234                        (verbose=2)
    verbose=0: nothing.

On a terminal every line fits the terminal's width (asked again at each redraw, so resizing
works), because a redraw with ``\\r`` only returns to the start of the screen row: a line that
wrapped would leave its first part behind on every redraw. When the line is too long the bar
shrinks first (to 10 cells), then the metrics that do not fit are left off, last first.
Jupyter renders ``\\r`` redraws itself and wraps long lines, so there the line is not cut.

The API a loop uses:

    bar = Progbar(steps, title="Epoch 3/10")     # steps per epoch (None if unknown)
    bar.update(step + 1, {"loss": 0.25, "accuracy": 0.9})   # after each step: running means
    bar.finish({"loss": 0.24, "accuracy": 0.91, "val_loss": 0.3})   # once, at the epoch end

Values are shown as given (the loop passes running means).
"""
from __future__ import annotations

import numbers
import os
import shutil
import sys
import time

__all__ = ["Progbar"]


def _format_duration(seconds):
    """Keras's ETA and epoch-time format: 7s, 1:05, 1:02:03."""
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
    if seconds >= 60:
        return f"{seconds // 60}:{seconds % 60:02d}"
    return f"{seconds}s"


def _format_per_unit(seconds, unit):
    if seconds >= 1:
        return f"{seconds:.0f}s/{unit}"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms/{unit}"
    return f"{seconds * 1e6:.0f}us/{unit}"


def _format_value(value):
    """A metric as Keras shows it: 4 decimals, or scientific notation when tiny."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    value = float(value)
    return f"{value:.4f}" if abs(value) > 1e-3 or value != value else f"{value:.4e}"


def _in_notebook(stream):
    """Whether ``stream`` is a Jupyter kernel's output (it renders \\r redraws itself)."""
    return "ipykernel" in sys.modules and type(stream).__module__.split(".")[0] == "ipykernel"


def _is_terminal(stream):
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


class Progbar:
    """A Keras-style progress bar for one epoch (or one evaluation): see the module docstring.

    target: the number of steps (None if unknown: the line then counts up, "57/Unknown").
    stream: where to write (default: sys.stdout at construction).
    width: the columns a line may take (default: the terminal's width on a terminal, no limit
        elsewhere). Lines are at most width - 1 characters so that none ever wraps.
    verbose: 1 a bar (redrawn in place on a terminal or in Jupyter, one line per epoch
        elsewhere), 2 one line per epoch without a bar, 0 silent.
    interval: the least time between two redraws, in seconds.
    unit_name: what a step is called in the time per step ("4ms/step").
    title: a heading such as "Epoch 3/10": its own line above a live bar, the start of the
        line otherwise.
    """

    def __init__(self, target, stream=None, width=None, verbose=1, interval=0.1, unit_name="step",
                 title=None):
        if verbose not in (0, 1, 2):
            raise ValueError(f"Progbar: verbose must be 0, 1 or 2, got {verbose!r}")
        if target is not None and int(target) < 0:
            raise ValueError(f"Progbar: target must be >= 0 or None, got {target!r}")
        if width is not None and int(width) < 2:
            raise ValueError(f"Progbar: width must be at least 2 columns, got {width!r}")
        self.target = None if target is None else int(target)
        self.stream = stream if stream is not None else sys.stdout
        self.width = None if width is None else int(width)
        self.verbose = verbose
        self.interval = float(interval)
        self.unit_name = unit_name
        self.title = title
        self.current = 0
        self.values = {}
        self.finished = False
        self._terminal = _is_terminal(self.stream)
        # Live: redrawn in place. Elsewhere the epoch's one line is written by finish().
        self.live = verbose == 1 and (self._terminal or _in_notebook(self.stream))
        self._start = time.perf_counter()
        self._last_draw = None
        self._drawn = 0          # length of the line on screen now (to blank a longer old one)
        self._title_done = False

    # --- the loop's calls -------------------------------------------------------------------
    def update(self, current, values=None):
        """Record that ``current`` steps are done, with ``values`` (name -> number) to show.

        Redraws the live line at most once per ``interval``; writes nothing elsewhere.
        """
        self.current = int(current)
        if values is not None:
            self.values = dict(values)
        if not self.live or self.finished:
            return
        now = time.perf_counter()
        if self._last_draw is not None and now - self._last_draw < self.interval:
            return
        self._last_draw = now
        self._redraw(self._line(now, final=False))

    def finish(self, values=None):
        """End the bar with its final ``values`` (say, the epoch's logs with val_*): the live
        line is drawn a last time and kept; elsewhere the epoch's one line is written."""
        if self.finished:
            return
        self.finished = True
        if values is not None:
            self.values = dict(values)
        if self.target is None:
            self.target = self.current
        if self.verbose == 0:
            return
        now = time.perf_counter()
        if self.live:
            self._redraw(self._line(now, final=True))
            self.stream.write("\n")
        else:
            self.stream.write(self._line(now, final=True, prefix=self.title) + "\n")
        self.stream.flush()

    # --- drawing ----------------------------------------------------------------------------
    def _columns(self):
        """Characters a line may hold: width - 1 (None: no limit)."""
        if self.width is not None:
            return self.width - 1
        if not self._terminal:
            return None
        try:
            columns = os.get_terminal_size(self.stream.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = shutil.get_terminal_size().columns
        return max(columns, 2) - 1

    def _redraw(self, line):
        if not self._title_done:
            self._title_done = True
            if self.title:
                self.stream.write(self._fit_plain(self.title) + "\n")
        pad = max(self._drawn - len(line), 0)
        self.stream.write("\r" + line + " " * pad)
        self.stream.flush()
        self._drawn = len(line)

    def _fit_plain(self, text):
        limit = self._columns()
        return text if limit is None else text[:limit]

    def _line(self, now, final, prefix=None):
        elapsed = now - self._start
        target, current = self.target, self.current
        if target is None:
            count = f"{current}/Unknown"
        else:
            count = f"{current:>{len(str(target))}}/{target}"
        per_unit = elapsed / current if current > 0 else None
        if final or target is None or per_unit is None:
            timing = f" - {_format_duration(elapsed)}"
            if per_unit is not None:
                timing += f" {_format_per_unit(per_unit, self.unit_name)}"
        else:
            timing = f" - ETA: {_format_duration(per_unit * max(target - current, 0))}"
        head = (f"{prefix} - " if prefix else "") + count
        items = [f" - {name}: {_format_value(value)}" for name, value in self.values.items()]
        with_bar = self.verbose == 1 and target is not None
        return self._fit(head, timing, items, with_bar)

    def _bar(self, cells):
        target = max(self.target, 1)
        done = min(self.current, target)
        filled = int(cells * done / target)
        text = "=" * max(filled - 1, 0)
        if filled > 0:
            text += "=" if done >= target else ">"
        return " [" + text + "." * (cells - filled) + "]"

    def _fit(self, head, timing, items, with_bar):
        """head [bar] timing items, within the columns: the bar shrinks, then items go."""
        limit = self._columns()
        cells = 30 if with_bar else 0

        def assemble(cells, items):
            return head + (self._bar(cells) if cells else "") + timing + "".join(items)

        line = assemble(cells, items)
        if limit is None or len(line) <= limit:
            return line
        if cells:
            cells = max(10, cells - (len(line) - limit))
            line = assemble(cells, items)
        while items and len(line) > limit:
            items = items[:-1]
            line = assemble(cells, items)
        if len(line) > limit and cells:
            line = assemble(0, items)
        return line[:limit]
