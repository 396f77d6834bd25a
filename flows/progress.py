"""Training progress a person can follow: a bar on a terminal, plain lines in the log.

The loop (gan/loop.py) reports a `Status` after every call of the step; this decides what is
shown. On a terminal, rich draws a bar: step / steps, g_loss, d_loss, images/s, the share of
the time spent waiting for input, and time left; Prefect's console log lines print above it.
The log gets one plain line with the same figures every `log_every_s` seconds (the flow run's
log in the UI shows them; under a bar, less often), and "resumed from step N" when a run
continues a previous one.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

from prefect.logging.handlers import PrefectConsoleHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from gan.loop import Status

LOG_EVERY_S = 15.0  # without a terminal: the log is all there is
LOG_EVERY_S_UNDER_BAR = 60.0


def figures(status: Status) -> str:
    return (f"g_loss {status.g_loss:.3f}, d_loss {status.d_loss:.3f}, {status.images_per_s:.0f} images/s, "
            f"{status.input_share:.0%} of the time waiting for input")  # fmt: skip


def duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"


class TrainingProgress:
    """The loop's `on_status`; a context manager that shows a bar while training on a terminal."""

    def __init__(self, logger: logging.Logger | logging.LoggerAdapter, terminal: bool | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.logger, self.clock = logger, clock
        self.terminal = sys.stdout.isatty() if terminal is None else terminal
        self.log_every_s = LOG_EVERY_S_UNDER_BAR if self.terminal else LOG_EVERY_S
        self.bar: Progress | None = None
        self.first: tuple[float, int] | None = None  # (time, step) of the first status: time left counts from it
        self.logged_at = -float("inf")

    def __enter__(self) -> TrainingProgress:
        if self.terminal:
            self.bar = Progress(TextColumn("step"), MofNCompleteColumn(), BarColumn(bar_width=16),
                                TextColumn("{task.fields[figures]}"), TimeRemainingColumn())  # fmt: skip
            self.task = self.bar.add_task("train", total=None, figures="")
            # Prefect's console log lines go through the bar's console, so they print above the bar.
            self.handlers = [(handler, handler.console) for handler in _console_handlers()]
            for handler, _ in self.handlers:
                handler.console = self.bar.console
            self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()
            for handler, console in self.handlers:
                handler.console = console

    def __call__(self, status: Status) -> None:
        now = self.clock()
        if self.first is None:
            self.first = (now, status.step)
            if status.start:
                self.logger.info("resumed from step %d of %d", status.start, status.total)
        if self.bar is not None:
            compact = (f"g {status.g_loss:.2f} d {status.d_loss:.2f} {status.images_per_s:.0f} img/s "
                       f"input {status.input_share:.0%}")  # fmt: skip
            self.bar.update(self.task, completed=status.step, total=status.total, figures=compact)
        if now - self.logged_at >= self.log_every_s or status.step == status.total:
            self.logged_at = now
            self.logger.info("step %d/%d: %s%s", status.step, status.total, figures(status), self.left(status, now))

    def left(self, status: Status, now: float) -> str:
        """", 3 min 05 s left", from the pace since the first status (the first call also traces)."""
        began, step = self.first
        if status.step == status.total or status.step == step:
            return ""
        return f", {duration((now - began) / (status.step - step) * (status.total - status.step))} left"


def _console_handlers() -> list[PrefectConsoleHandler]:
    loggers = [logging.getLogger(), *(item for item in logging.root.manager.loggerDict.values()
                                      if isinstance(item, logging.Logger))]  # fmt: skip
    return [handler for logger in loggers for handler in logger.handlers if isinstance(handler, PrefectConsoleHandler)]
