"""SIGTERM becomes an interrupt; a deferred block finishes its work before a signal is delivered; data-loading
workers leave stop signals to the main process."""

import os
import signal
import subprocess
import time

import pytest
import torch

from simclr.interrupts import Terminated, deferred, ignore_stop_signals, terminate_as_interrupt


def test_sigterm_raises_terminated_and_the_old_handler_comes_back() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated) as caught, terminate_as_interrupt():
        os.kill(os.getpid(), signal.SIGTERM)
        pytest.fail("the handler should have raised")
    assert isinstance(caught.value, KeyboardInterrupt) and caught.value.exit_code == 143
    assert signal.getsignal(signal.SIGTERM) == before


@pytest.fixture
def ctrl_c_raises():
    """Python's own SIGINT handler, whatever the test process inherited (a background job ignores SIGINT)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_inside_deferred_waits_for_the_block_to_finish(signum: int, ctrl_c_raises) -> None:
    done = []
    with pytest.raises(KeyboardInterrupt) as caught, terminate_as_interrupt():
        with deferred():
            os.kill(os.getpid(), signum)
            done.extend([1, 2, 3])  # runs: the signal is held
        pytest.fail("the held signal should have been delivered at the end of the block")
    assert done == [1, 2, 3]
    assert isinstance(caught.value, Terminated) == (signum == signal.SIGTERM)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_an_ignored_signal_stays_ignored() -> None:
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with deferred():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_no_signal_no_effect() -> None:
    with terminate_as_interrupt(), deferred():
        x = sum(range(10))
    assert x == 45


def test_default_actions_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under torchrun SIGTERM keeps its default action (the agent ends workers with it); deferred holds no
    such signal."""
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job")
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        with terminate_as_interrupt():
            assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
            with deferred():
                assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
                assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler  # SIGINT is held
    finally:
        signal.signal(signal.SIGTERM, previous)


class _WorkerPids(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 6

    def __getitem__(self, i: int) -> int:
        time.sleep(0.05)
        return os.getpid()


@pytest.mark.parametrize("init", [None, ignore_stop_signals])
def test_data_workers_leave_a_stop_signal_to_the_main_process(init) -> None:
    """A SIGTERM sent to the whole job (by `timeout`, a scheduler, not by the workers' parent) kills PyTorch's
    workers, failing the main process with "killed by signal" wherever it is (while it saves last.pt, say);
    with ``ignore_stop_signals`` they go on, and the main process stops them as it stops itself."""
    loader = torch.utils.data.DataLoader(_WorkerPids(), batch_size=1, num_workers=1, worker_init_fn=init)
    batches = iter(loader)
    pid = int(next(batches))
    subprocess.run(["kill", "-TERM", str(pid)], check=True)  # another process than the workers' parent
    if init is None:
        with pytest.raises(RuntimeError, match="killed by signal: Terminated"):
            time.sleep(0.5)
            list(batches)
    else:
        time.sleep(0.5)
        assert [int(b) for b in batches] == [pid] * 5
