"""A small progress bar for training, driven by ``fit``'s per-epoch callbacks.

``fit`` runs each epoch in one compiled call, so the bar moves once per epoch:

    epoch 3/10 [###-------] loss 0.157  val_loss 0.162  ETA 0:04  612k samples/s

It draws on one terminal line (stderr by default) and draws nothing when the stream
is not a terminal, so logs and pipes stay clean::

    bar = ProgressBar(epochs=20, n_samples=len(X))
    with bar:
        net.fit(X, y, epochs=20, callbacks=[bar])
"""

import os
import shutil
import sys
import time


def _duration(seconds):
    seconds = int(round(seconds))
    if seconds < 3600:
        return f"{seconds // 60}:{seconds % 60:02d}"
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _rate(value):
    if value >= 1e6:
        return f"{value / 1e6:.3g}M"
    if value >= 1e4:
        return f"{value / 1e3:.3g}k"
    return f"{value:.0f}"


def _columns(stream):
    try:
        columns = os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, ValueError, OSError):
        columns = shutil.get_terminal_size().columns
    return columns if columns > 0 else 80


class ProgressBar:
    """A callback ``bar(epoch, metrics)`` that redraws one line after every epoch.

    epochs: the epochs of the ``fit`` call; n_samples: training samples per epoch (for
    samples/s). stream: where to draw (default sys.stderr). enabled: draw or not;
    default: only when the stream is a terminal (``isatty()``).
    """

    def __init__(self, epochs, n_samples, stream=None, enabled=None, bar_width=10):
        self.epochs = epochs
        self.n_samples = n_samples
        self.stream = sys.stderr if stream is None else stream
        if enabled is None:
            isatty = getattr(self.stream, "isatty", None)
            enabled = bool(isatty and isatty())
        self.enabled = enabled
        self.bar_width = bar_width
        self._line = ""
        self._started = None
        self._first_done = None  # end of the first epoch, which may include JIT compilation
        self._done = 0

    def start(self):
        """Draw the empty bar (the first epoch may take a while: it compiles or loads kernels)."""
        self._started = time.perf_counter()
        self._draw(self._format(0, "starting"))

    def __call__(self, epoch, metrics):
        now = time.perf_counter()
        if self._started is None:
            self._started = now - metrics.get("time", 0.0)
        self._done = epoch + 1
        if self._first_done is None:
            self._first_done = now
            per_epoch = now - self._started
        else:
            # Later epochs predict the remaining ones better than the first, which compiles.
            per_epoch = (now - self._first_done) / (self._done - 1)
        parts = [f"loss {metrics['loss']:.4g}"]
        if "val_loss" in metrics:
            parts.append(f"val_loss {metrics['val_loss']:.4g}")
        remaining = max(self.epochs - self._done, 0)
        parts.append(f"ETA {_duration(per_epoch * remaining)}" if remaining
                     else f"done in {_duration(now - self._started)}")
        if metrics.get("time", 0) > 0:
            parts.append(f"{_rate(self.n_samples / metrics['time'])} samples/s")
        self._draw(self._format(self._done, "  ".join(parts)))

    def _format(self, done, text):
        filled = self.bar_width * done // max(self.epochs, 1)
        bar = "#" * filled + "-" * (self.bar_width - filled)
        return f"epoch {done}/{self.epochs} [{bar}] {text}"

    def _draw(self, line):
        if not self.enabled:
            return
        # One character short of the width: a full line would wrap and break the redraw.
        self._line = line[:max(_columns(self.stream) - 1, 10)]
        self.stream.write("\r" + self._line + "\x1b[K")
        self.stream.flush()

    def write(self, text, stream=None):
        """Print a line of text above the bar (to stdout by default), then redraw the bar."""
        stream = sys.stdout if stream is None else stream
        if self.enabled and self._line:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
        print(text, file=stream, flush=True)
        if self.enabled and self._line:
            self.stream.write(self._line)
            self.stream.flush()

    def close(self):
        """End the bar's line, leaving its last state on screen."""
        if self.enabled and self._line:
            self.stream.write("\n")
            self.stream.flush()
        self._line = ""

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()
        return False
