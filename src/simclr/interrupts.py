"""Stop requests from outside: Ctrl-C (SIGINT) and ``kill``/schedulers (SIGTERM).

The CLI turns SIGTERM into :class:`Terminated`, a :class:`KeyboardInterrupt`, so a terminated run takes the
same path as Ctrl-C: it saves ``last.pt`` and exits (code 143 rather than 130). A training step runs inside
:func:`deferred`, so a signal never lands between a parameter update and the step counter: it is held until
the step is complete, then delivered.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: stop as after Ctrl-C, exit with 128 + 15."""

    exit_code = 143


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """While inside, SIGTERM raises :class:`Terminated` where the program is (as SIGINT raises
    KeyboardInterrupt).

    Not under torchrun: its agent stops workers with SIGTERM when a peer fails and restarts them from the last
    checkpoint every rank wrote, which a rank-0-only save on the way out would replace.
    """
    if not _main_thread() or "TORCHELASTIC_RUN_ID" in os.environ:  # handlers: main thread only
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM until the block ends, then deliver the first one to its Python handler.

    Only signals with a Python handler are held: one the process ignores stays ignored, and one with the
    system's default action (SIGTERM under torchrun, whose agent ends workers that way) still ends the process
    at once. Costs a few ``signal.signal`` calls (microseconds) per entry.
    """
    if not _main_thread():
        yield
        return
    held: list[tuple[int, FrameType | None]] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        held.append((signum, frame))

    previous: dict[int, Callable[[int, FrameType | None], Any]] = {}
    for s in SIGNALS:
        handler = signal.getsignal(s)
        if callable(handler):  # an ignored signal (SIG_IGN) stays ignored
            previous[s] = handler
            signal.signal(s, hold)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        if held:
            signum, frame = held[0]
            previous[signum](signum, frame)


def ignore_stop_signals(worker_id: int = 0) -> None:
    """A data-loading worker's ``worker_init_fn``: ignore SIGINT and SIGTERM, which a terminal's Ctrl-C,
    ``timeout`` or a scheduler sends to every process of the job. The main process alone decides how to stop
    (it saves ``last.pt`` and shuts its workers down); a worker killed by the signal would instead fail the
    main process with "DataLoader worker is killed by signal" while it saves. Workers still end when the main
    process does (PyTorch's workers watch their parent)."""
    for s in SIGNALS:
        signal.signal(s, signal.SIG_IGN)
