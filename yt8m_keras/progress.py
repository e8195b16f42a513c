"""Progress of long streaming work (prediction, evaluation) that reads well in a terminal and in a log.

On a terminal it is a tqdm bar redrawn in place. Piped to a file (a batch job's log), a
bar redrawn with carriage returns runs together into one unreadable line, so there it
prints one whole line every `interval` seconds and a final line.
"""

import sys
import time
from typing import Optional, TextIO

from tqdm import tqdm


class Progress:
    """Counts of a stream, shown as a bar on a terminal and as whole lines in a log.

    Args:
        unit: what `update` counts, e.g. "products".
        total: how many are expected, if known.
        interval: seconds between lines when the output is not a terminal.
        file: where to write (default: standard error).

    Example:
        >>> with Progress("products") as progress:
        ...     for batch in batches:
        ...         progress.update(len(batch), images=images_seen)
    """

    def __init__(self, unit: str, total: Optional[int] = None, interval: float = 10.0,
                 file: Optional[TextIO] = None):
        self.unit, self.interval, self.file = unit, interval, file or sys.stderr
        self.count, self.extra = 0, {}
        self._start = self._last = time.monotonic()
        is_terminal = hasattr(self.file, "isatty") and self.file.isatty()
        self._bar = tqdm(total=total, unit=f" {unit}", file=self.file, dynamic_ncols=True) if is_terminal else None

    def update(self, n: int = 1, **extra) -> None:
        """Adds `n` to the count; `extra` are other counts shown beside it (their current values)."""
        self.count += n
        self.extra.update(extra)
        if self._bar is not None:
            self._bar.update(n)
            if extra:
                self._bar.set_postfix(extra, refresh=False)
        elif time.monotonic() - self._last >= self.interval:
            self._line()

    def _line(self) -> None:
        self._last = time.monotonic()
        elapsed = max(self._last - self._start, 1e-9)
        extra = "".join(f", {value:,} {name}" for name, value in self.extra.items())
        print(f"{self.count:,} {self.unit}{extra} ({self.count / elapsed:,.1f} {self.unit}/s)",
              file=self.file, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        else:
            self._line()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
