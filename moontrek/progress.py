"""Progress of ``moontrek batch`` on standard error: a rich progress bar
(counts, rate, time left) on a terminal, one plain line per record
otherwise (a log file or CI), so standard output stays the records."""

import contextlib

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

__all__ = ["batch_progress", "describe"]


def describe(record):
    """One record in a few words: ``01 SIFT ok, 273 inliers, 412 ms``, or
    ``02 ORB failed (80 ms): <the message>``."""
    head = f"{record['name']} {record['algorithm']}"
    if record["ok"]:
        return f"{head} ok, {record['inliers']} inliers, {record['ms']:.0f} ms"
    return f"{head} failed ({record['ms']:.0f} ms): {record['error']}"


class _RateColumn(ProgressColumn):
    """Registrations per second (rich's own speed column counts bytes)."""

    def render(self, task):
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.2f}/s" if speed else "-/s", style="progress.data.speed")


class _Bar:
    def __init__(self, progress, task):
        self.progress, self.task = progress, task
        self.failed = 0

    def advance(self, record):
        self.failed += not record["ok"]
        self.progress.update(self.task, advance=1, failed=self.failed)
        if not record["ok"]:
            self.progress.console.print(f"[red]{describe(record)}[/red]", highlight=False, markup=True)


class _Lines:
    def __init__(self, total, stream):
        self.total, self.stream = total, stream
        self.done = 0

    def advance(self, record):
        self.done += 1
        self.stream.write(f"[{self.done}/{self.total}] {describe(record)}\n")
        self.stream.flush()


@contextlib.contextmanager
def batch_progress(total, stream):
    """A progress reporter with ``advance(record)`` for ``total`` records."""
    if not stream.isatty():
        yield _Lines(total, stream)
        return
    columns = (
        TextColumn("registering"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[failed]} failed"),
        _RateColumn(),
        TimeElapsedColumn(),
        TextColumn("left"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(file=stream), transient=False) as progress:
        yield _Bar(progress, progress.add_task("batch", total=total, failed=0))
