"""Process control of a batch run: stop on a signal, kill job trees, one runner per folder.

A batch run starts one process per notebook, each with a Jupyter kernel; this module
keeps them from outliving the run: one process group per job with a parent-death
signal, SIGINT/SIGTERM handling that stops running jobs cleanly, and one runner per
``--out`` folder.

Details and derivations: docs/METHODS.md, section ``lensllm_nb.workflow.batch.control``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from ...errors import BatchError, ConfigError
from ...utils.safe_output import open_inside

__all__ = ["RunControl", "StopRun", "lock_folder", "die_with_parent", "kill_group", "wait_or_kill",
           "sleep_unless_stopped", "RUNNER_PID_ENV"]

# The job process learns its runner's pid from this variable, so it can tell a
# runner that died before `die_with_parent` ran.
RUNNER_PID_ENV = "LENSLLM_NB_RUNNER_PID"
_PR_SET_PDEATHSIG = 1
# Seconds a job group gets between SIGTERM and SIGKILL.
_KILL_GRACE_S = 5.0


class StopRun(Exception):
    """A signal stopped the run before any job started (see `RunControl.interruptible`).

    Attributes
    ----------
    signal : str
        ``"SIGINT"`` or ``"SIGTERM"``.
    """

    def __init__(self, signal_name):
        super().__init__(f"stopped by {signal_name} before any job started")
        self.signal = signal_name


class RunControl:
    """Running job processes of one batch run, and whether the run was told to stop.

    Attributes
    ----------
    stopped : str or None
        Why the run stopped: a signal name (``"SIGINT"``, ``"SIGTERM"``), ``"error"``
        when the runner itself failed, or None.
    """

    def __init__(self):
        self.stopped = None
        self._running = set()
        self._lock = threading.Lock()
        self._interruptible = False

    def popen(self, args, **kwargs) -> subprocess.Popen | None:
        """Start a job process in its own process group; None when the run is stopping."""
        with self._lock:
            if self.stopped:
                return None
            env = {**kwargs.pop("env", os.environ), RUNNER_PID_ENV: str(os.getpid())}
            proc = subprocess.Popen(args, start_new_session=True, env=env, **kwargs)
            self._running.add(proc)
            return proc

    @property
    def interrupted(self) -> str | None:
        """The signal that stopped the run, or None (also when an error stopped it)."""
        return self.stopped if self.stopped and self.stopped.startswith("SIG") else None

    def release(self, proc) -> None:
        """Forget a finished job process."""
        with self._lock:
            self._running.discard(proc)

    def stop(self, reason="SIGINT", *, force=False) -> None:
        """Stop launching jobs and terminate the running job groups (SIGKILL when `force`)."""
        with self._lock:
            self.stopped = self.stopped or reason
            running = list(self._running)
        for proc in running:
            kill_group(proc, signal.SIGKILL if force else signal.SIGTERM)

    @contextmanager
    def signals(self):
        """While inside: SIGINT/SIGTERM stop the run; a second one kills the job groups."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return

        def handle(signum, frame):
            self.stop(signal.Signals(signum).name, force=self.stopped is not None)
            if self._interruptible:
                raise StopRun(self.stopped)

        previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


    @contextmanager
    def interruptible(self):
        """While inside (work that starts no process: reading and expanding a grid), a signal raises `StopRun`.

        Pure computation checks no flag, so a signal must interrupt it where it is;
        a signal that came before raises at once.
        """
        if self.stopped:
            raise StopRun(self.stopped)
        self._interruptible = True
        try:
            yield self
        finally:
            self._interruptible = False


def kill_group(proc, sig=signal.SIGTERM) -> None:
    """Send `sig` to the process group of `proc` (its own, see `RunControl.popen`)."""
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def wait_or_kill(proc, timeout) -> bool:
    """Wait for `proc`; past `timeout` seconds, kill its group. Return whether it timed out."""
    try:
        proc.wait(timeout=timeout)
        return False
    except subprocess.TimeoutExpired:
        kill_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=_KILL_GRACE_S)
        except subprocess.TimeoutExpired:
            kill_group(proc, signal.SIGKILL)
            proc.wait()
        return True


def die_with_parent() -> None:
    """Make this process receive SIGTERM when its parent (the runner) dies; exit if it already has."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the runner's stop() still kills the group
        pass
    runner = os.environ.get(RUNNER_PID_ENV)
    if runner and os.getppid() != int(runner):
        raise SystemExit("the batch runner that started this job has exited")
    # SIGTERM becomes SystemExit, so papermill's clean-up shuts the kernel down.
    signal.signal(signal.SIGTERM, _exit_on_signal)


def _exit_on_signal(signum, frame):
    raise SystemExit(128 + signum)


@contextmanager
def lock_folder(out: Path):
    """Hold an exclusive lock on `out` for a run; refuse when another runner holds it."""
    import fcntl

    path = Path(out) / ".lensllm-nb.lock"
    try:
        # Never through a link: refused before anything is written, also when the run is refused.
        handle = open_inside(out, path.name, "a+")
    except OSError as exc:
        raise ConfigError(f"`out` = {str(out)!r} is not writable ({exc.strerror}); choose another --out") from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "?"
            raise BatchError(f"`out` = {str(out)!r} is in use by another run (pid {owner}); wait for it to "
                             "finish or choose another --out") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield path
    finally:
        handle.close()


def sleep_unless_stopped(control, seconds) -> None:
    """Sleep up to `seconds`, waking early when the run is stopped."""
    deadline = time.monotonic() + seconds
    while not control.stopped and time.monotonic() < deadline:
        time.sleep(min(0.1, deadline - time.monotonic()))
