"""Run framework code in a separate worker process.

Two kinds of framework need it: those whose state is fixed per process (Keras 3 picks its backend
once, at import), and those that may take the interpreter down (a segfault inside a framework must
become a reported finding, never end the suite). ``call("package.module:function", *args, env=...)``
runs the function in a worker started with ``env`` added to the environment and returns its
result; workers are kept per environment, so a framework is imported once per session, not once
per call.

Outcomes, each distinct:

- the function returns: its (picklable) result comes back;
- the function raises: the same exception is raised here (its worker traceback attached as a note),
  so adapters' own error messages reach the user unchanged;
- the worker dies (signal, ``os._exit``, out of memory) or exceeds ``timeout``: ``WorkerCrashed``
  with the exit status or signal and the tail of what the worker printed; the next call starts a
  new worker.

A worker hosts its own environment: a call for an environment that the calling process was itself
started with as a worker (every variable the same) runs right there, since such a process already
is what a new worker would be. The matrix's background lane uses this to measure ``keras-jax`` in
the lane itself (``reports.matrix``); an empty environment is never hosted, so code isolated only
to contain a crash always gets its own process.

The protocol is length-prefixed pickles over the worker's stdin/stdout, between this package and
a child it started itself (nothing untrusted is unpickled). The worker moves the framework's own
prints off the protocol channel onto stderr, which goes to a temporary file read back for crash reports.
"""

from __future__ import annotations

import atexit
import importlib
import json
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import NoReturn

_HEADER = struct.Struct("!Q")
DEFAULT_TIMEOUT = 300.0


# What a WorkerCrashed message puts between how the worker died and the tail of its output.
LAST_OUTPUT = "; its last output:"


class WorkerCrashed(RuntimeError):
    """The worker process died or hung; ``status`` says how, ``output`` is the tail of what it printed."""

    def __init__(self, target: str, status: str, output: str):
        tail = output.strip()[-2000:]
        super().__init__(f"{target}: the worker process {status}" + (f"{LAST_OUTPUT}\n{tail}" if tail else ""))
        self.target = target
        self.status = status
        self.output = output

    def __reduce__(self):
        # The default rebuilds from ``args`` (the message alone), which this __init__ cannot take.
        return type(self), (self.target, self.status, self.output)


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "did not answer in time and was killed"
    if code < 0:
        try:
            return f"was killed by signal {signal.Signals(-code).name} ({-code})"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


class _Worker:
    def __init__(self, env: dict[str, str], preload: tuple[str, ...] = ()):
        self.log = tempfile.TemporaryFile(mode="w+b")
        root = str(Path(__file__).resolve().parent.parent)
        environment = {**os.environ, **env, _PRELOAD: ",".join(preload), _HOSTED: json.dumps(env)}
        environment["PYTHONPATH"] = os.pathsep.join(p for p in (root, environment.get("PYTHONPATH")) if p)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "adapters.isolation"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, env=environment, cwd=root,
        )
        self.used = False
        self.lock = threading.Lock()  # one request at a time per worker; workers serve callers in parallel

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace")

    def _read_exact(self, size: int, deadline_s: float) -> bytes:
        chunks, remaining = [], size
        stream = self.process.stdout
        while remaining:
            ready, _, _ = select.select([stream], [], [], deadline_s)
            if not ready:
                raise TimeoutError
            chunk = os.read(stream.fileno(), remaining)
            if not chunk:
                raise EOFError
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)

    def request(self, target: str, payload: bytes, timeout: float):
        self.used = True
        try:
            self.process.stdin.write(_HEADER.pack(len(payload)) + payload)
            self.process.stdin.flush()
            (size,) = _HEADER.unpack(self._read_exact(_HEADER.size, timeout))
            return pickle.loads(self._read_exact(size, timeout))
        except TimeoutError:
            self.process.kill()
            self.process.wait()
            raise WorkerCrashed(target, f"did not answer within {timeout:g} s and was killed", self.output()) from None
        except (EOFError, BrokenPipeError, OSError):
            code = self.process.wait()
            raise WorkerCrashed(target, _describe_exit(code), self.output()) from None

    def close(self) -> None:
        self.begin_close()
        self.finish_close(time.monotonic() + 10)

    def begin_close(self) -> None:
        """Ask it to exit: end of input (it returns from its loop); killed if it was never called."""
        if self.process.poll() is None and not self.used:
            # Started ahead of need and never called: do not wait for its preload import to finish.
            self.process.kill()
        try:
            self.process.stdin.close()
        except OSError:
            pass

    def finish_close(self, deadline: float) -> None:
        try:
            self.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


_WORKERS: dict[tuple, _Worker] = {}
_LOCK = threading.Lock()
_PRELOAD = "GRU_EQUIV_WORKER_PRELOAD"
_HOSTED = "GRU_EQUIV_WORKER_ENV"  # in a worker: the environment it was started for (JSON)


def hosts(env: dict[str, str] | None) -> bool:
    """Whether this process is a worker started with every variable of ``env`` (non-empty) as given:
    then calls for ``env`` run here, in the process a new worker would only duplicate."""
    if not env:
        return False
    try:
        started_with = json.loads(os.environ.get(_HOSTED, "{}"))
    except ValueError:
        return False
    return isinstance(started_with, dict) and all(started_with.get(key) == value for key, value in env.items())


def _run_here(target: str, args, kwargs):
    module_name, function_name = target.split(":")
    return getattr(importlib.import_module(module_name), function_name)(*args, **kwargs)


def start(env: dict[str, str] | None = None, preload: tuple[str, ...] = ()) -> None:
    """Start the worker for ``env`` now, importing ``preload`` modules in the background, so a slow
    framework import overlaps with other work instead of delaying the first ``call``."""
    if hosts(env):
        return
    key = tuple(sorted((env or {}).items()))
    with _LOCK:
        worker = _WORKERS.get(key)
        if worker is None or worker.process.poll() is not None:
            _WORKERS[key] = _Worker(dict(env or {}), tuple(preload))


def call(target: str, *args, env: dict[str, str] | None = None, timeout: float = DEFAULT_TIMEOUT, **kwargs):
    """Run ``module:function(*args, **kwargs)`` in the worker for ``env``; see the module docstring.

    Thread-safe: calls for one ``env`` take turns in its worker, calls for different ones run at once."""
    if hosts(env):
        return _run_here(target, args, kwargs)
    key = tuple(sorted((env or {}).items()))
    payload = pickle.dumps((target, args, kwargs))
    while True:
        with _LOCK:
            worker = _WORKERS.get(key)
            if worker is None or worker.process.poll() is not None:
                worker = _WORKERS[key] = _Worker(dict(env or {}))
        with worker.lock:
            with _LOCK:
                current = _WORKERS.get(key) is worker
            if not current:  # it crashed during another caller's request and was replaced: use the new one
                continue
            try:
                ok, value, worker_traceback = worker.request(target, payload, timeout)
            except WorkerCrashed:
                with _LOCK:
                    if _WORKERS.get(key) is worker:
                        del _WORKERS[key]
                worker.close()
                raise
        break
    if ok:
        return value
    if isinstance(value, BaseException):
        value.add_note(f"(raised in an isolated worker process)\n{worker_traceback}")
        raise value
    raise RuntimeError(f"{target} failed in the worker: {value}\n{worker_traceback}")


def shutdown(wait: bool = True) -> None:
    """Stop every worker: all are told at once, then (``wait``) awaited, so their exits (seconds each for
    a process holding TensorFlow or JAX) overlap instead of adding up. At this process's exit nothing
    waits: each worker has answered every call and ends on its own once its input closes."""
    with _LOCK:
        workers = list(_WORKERS.values())
        _WORKERS.clear()
    close_all(workers, wait)


def close_all(workers, wait: bool = True) -> None:
    for worker in workers:
        worker.begin_close()
    if not wait:
        return
    deadline = time.monotonic() + 10
    for worker in workers:
        worker.finish_close(deadline)


atexit.register(shutdown, wait=False)


# ----------------------------------------------------------------- the worker side


def _serve() -> None:
    # Framework prints must not corrupt the protocol: keep the real stdout for replies only.
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    requests = sys.stdin.buffer
    for module in filter(None, os.environ.pop(_PRELOAD, "").split(",")):
        try:
            importlib.import_module(module)
        except Exception:  # the first call imports it again and reports the error to its caller
            pass
    while True:
        header = requests.read(_HEADER.size)
        if len(header) < _HEADER.size:
            return
        (size,) = _HEADER.unpack(header)
        target, args, kwargs = pickle.loads(requests.read(size))
        try:
            reply = (True, _run_here(target, args, kwargs), "")
        except BaseException as error:  # everything goes back to the caller; the worker keeps serving
            text = traceback.format_exc()
            try:
                # A round trip, not just dumps: an exception whose __init__ takes other arguments
                # than its message pickles fine and fails to load in the caller.
                pickle.loads(pickle.dumps(error))
                reply = (False, error, text)
            except Exception:
                reply = (False, f"{type(error).__name__}: {error}", text)
        data = pickle.dumps(reply)
        replies.write(_HEADER.pack(len(data)) + data)
        replies.flush()


def exit_without_teardown(code: int) -> NoReturn:
    """End this process now: run its ``atexit`` hooks and flush the standard streams, then skip the
    interpreter's teardown. In a process holding TensorFlow, torch or JAX that teardown takes seconds
    (5.5 s after ``gru-equiv report`` here, all of it in native code: the hooks took 0.04 s) and does
    nothing anyone needs, since every file is written and closed by then and workers end when their
    input closes. For the ``gru-equiv`` command (``reports.cli.entry``) and for workers, never for a
    library caller."""
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a reader that went away (| head), or a closed stream
            pass
    os._exit(code)


if __name__ == "__main__":
    _serve()
    exit_without_teardown(0)
