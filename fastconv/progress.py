"""The progress bar fit draws: samples done, loss, accuracy, samples/s and time left."""
from __future__ import annotations

import sys
import time

__all__ = ["ProgressBar"]


def _format_seconds(seconds):
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds >= 60 else f"{seconds}s"


class ProgressBar:
    """One epoch's progress: samples done, loss, accuracy, samples/s and time left.

    Uses tqdm when it is installed, else redraws one text line (only on a terminal), at most
    ten times a second so that it costs nothing measurable per step.
    """

    _interval = 0.1

    def __init__(self, total, epoch, epochs, stream=None):
        self.total = total
        self.stream = stream if stream is not None else sys.stdout
        self.start = time.perf_counter()
        self.next_draw = self.start + self._interval
        self.prefix = f"Epoch {epoch + 1}/{epochs}"
        self.tqdm = None
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())
        if self.live:
            try:
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.tqdm = tqdm(total=total, desc=self.prefix, unit="sample", unit_scale=True,
                                 leave=False, file=self.stream, mininterval=self._interval)
        self.drawn = 0

    def due(self, done):
        """Whether a redraw is due: on a terminal, a tenth of a second after the last one, or at
        the end of the epoch."""
        return self.live and (done >= self.total or time.perf_counter() >= self.next_draw)

    def update(self, done, loss, accuracy):
        """Report ``done`` samples so far with the running mean loss and accuracy (or None)."""
        if not self.live:
            return
        now = time.perf_counter()
        if now < self.next_draw and done < self.total:
            return
        self.next_draw = now + self._interval
        elapsed = max(now - self.start, 1e-9)
        speed = done / elapsed
        if self.tqdm is not None:
            self.tqdm.update(done - self.drawn)
            self.drawn = done
            post = {"loss": f"{loss:.4f}"}
            if accuracy is not None:
                post["acc"] = f"{accuracy:.4f}"
            self.tqdm.set_postfix(post, refresh=False)
            return
        width = 24
        filled = int(width * done / max(self.total, 1))
        bar = "=" * filled + (">" if filled < width else "") + "." * max(width - filled - 1, 0)
        left = (self.total - done) / speed if speed > 0 else 0.0
        text = (f"\r{self.prefix} [{bar}] {done}/{self.total} - loss: {loss:.4f}"
                + (f" - accuracy: {accuracy:.4f}" if accuracy is not None else "")
                + f" - {speed:,.0f} samples/s - ETA {_format_seconds(left)}   ")
        self.stream.write(text)
        self.stream.flush()

    def close(self):
        """Remove the live line (the epoch summary is printed after it)."""
        if self.tqdm is not None:
            self.tqdm.close()
        elif self.live:
            self.stream.write("\r" + " " * 110 + "\r")
            self.stream.flush()
