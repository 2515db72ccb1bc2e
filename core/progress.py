"""Progress of long work: stage lines, and bars for loops.

On a terminal (stderr is a TTY) each stage shows a live rich status line on stderr and loops a
tqdm bar, both erased when done; elsewhere (CI, pipes, files) one plain line per stage goes to
stdout with the results, so that stderr carries nothing but errors (one line each). ``quiet``
silences everything. Stage times are kept in ``timings`` (seconds, for ``--timings``); they
never go into output files.

    progress = Progress()
    with progress.stage("front end"):
        ...
    for x in progress.bar(items, "taylor: layer fits"):
        ...
"""
from __future__ import annotations

import contextlib
import sys
import time
from typing import Iterable, Iterator, TypeVar

from rich.console import Console
from tqdm.auto import tqdm

T = TypeVar("T")


class Progress:
    def __init__(self, quiet: bool = False, stream=None, tty: bool | None = None):
        self.quiet = quiet
        self.tty = (hasattr(sys.stderr, "isatty") and sys.stderr.isatty()) if tty is None else tty
        self.stream = stream if stream is not None else (sys.stderr if self.tty else sys.stdout)
        self.timings: dict[str, float] = {}

    def _write(self, text: str) -> None:
        if not self.quiet:
            try:
                print(text, file=self.stream, flush=True)
            except (BrokenPipeError, ValueError):
                self.quiet = True

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """A named stage: announced, timed, and reported when it ends."""
        t0 = time.perf_counter()
        status = None
        if self.tty and not self.quiet:
            status = Console(file=self.stream).status(f"{name} …")
            status.start()
        else:
            self._write(f"[vitc] {name} …")
        try:
            yield
        finally:
            dt = time.perf_counter() - t0
            self.timings[name] = round(self.timings.get(name, 0.0) + dt, 3)
            if status is not None:
                status.stop()
                self._write(f"[vitc] {name}: {dt:.1f} s")

    def note(self, text: str) -> None:
        """A line of progress inside a stage (one per step of a slow loop)."""
        self._write(f"[vitc]   {text}")

    def bar(self, items: Iterable[T], desc: str, total: int | None = None) -> Iterable[T]:
        """``items`` with a tqdm bar on a terminal; plain iteration otherwise."""
        if self.quiet or not self.tty:
            return items
        return tqdm(items, desc=f"[vitc] {desc}", total=total, file=self.stream, leave=False)


SILENT = Progress(quiet=True)

__all__ = ["Progress", "SILENT"]
