"""Run a plugin's code (its import and its hooks) so that it cannot disturb the command.

:class:`PluginCall` is a context manager used by the registry around each plugin's import,
registration and hook calls. It does two things:

- **Output.** Whatever the plugin writes to standard output is captured instead of reaching
  the user, whose stdout may be JSON (``diffctl list plugins --json``). Both Python-level
  writes (``print``, ``sys.stdout``, ``sys.__stdout__``) and writes to file descriptor 1
  (``os.write(1, ...)``, a C extension's ``write(2)``, a child process) are captured; the text
  is kept in :attr:`PluginCall.output`. Standard error is left alone: it is the diagnostics
  channel and never corrupts machine-readable output. Not captured: bytes a C library keeps in
  its own ``stdio`` buffer and flushes later, and writes from other threads to file
  descriptor 1 go to the capture while it is active.
- **Interrupts.** A ``KeyboardInterrupt`` a plugin raises itself must be contained like any
  other exception, while a real Ctrl-C must still stop the command. While the block runs
  (in the main thread), SIGINT goes through a handler that notes the signal and then calls the
  previous handler; :attr:`PluginCall.interrupted` then tells a signal from an exception the
  plugin raised on its own. Outside the main thread a Ctrl-C is delivered to the main
  thread, so any ``KeyboardInterrupt`` seen here came from the plugin.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import sys
import tempfile
import threading
from types import FrameType, TracebackType
from typing import IO, Any

#: Captured output beyond this many characters is cut (a plugin printing megabytes).
MAX_OUTPUT = 4000


def _flush(stream: Any) -> None:
    with contextlib.suppress(Exception):
        if stream is not None:
            stream.flush()


class PluginCall:
    """Capture stdout and watch SIGINT while plugin code runs (see the module docstring)."""

    def __init__(self) -> None:
        self.output = ""
        self.interrupted = False
        self._previous_handler: Any = None
        self._saved_stdout: Any = None
        self._buffer = io.StringIO()
        self._saved_fd: int | None = None
        self._file: IO[bytes] | None = None

    def __enter__(self) -> PluginCall:
        self._watch_sigint()
        self._capture_start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            self._capture_stop()
        finally:
            self._unwatch_sigint()

    # -- SIGINT --------------------------------------------------------------------------------
    def _watch_sigint(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        previous = signal.getsignal(signal.SIGINT)
        if not callable(previous):  # SIG_IGN / SIG_DFL: a Ctrl-C raises no KeyboardInterrupt
            return

        def noted(signum: int, frame: FrameType | None) -> Any:
            self.interrupted = True
            return previous(signum, frame)

        try:
            signal.signal(signal.SIGINT, noted)
        except (ValueError, OSError):
            return
        self._previous_handler = previous

    def _unwatch_sigint(self) -> None:
        if self._previous_handler is not None:
            signal.signal(signal.SIGINT, self._previous_handler)
            self._previous_handler = None

    # -- stdout --------------------------------------------------------------------------------
    def _capture_start(self) -> None:
        _flush(sys.stdout)  # what the command printed so far is not the plugin's
        _flush(sys.__stdout__)
        try:
            self._file = tempfile.TemporaryFile()  # noqa: SIM115 - closed in _capture_stop
            self._saved_fd = os.dup(1)
            os.dup2(self._file.fileno(), 1)
        except OSError:  # no file descriptor 1 (closed, or an embedded interpreter)
            if self._saved_fd is not None:
                os.close(self._saved_fd)
            self._saved_fd = None
            if self._file is not None:
                self._file.close()
            self._file = None
        self._saved_stdout = sys.stdout
        sys.stdout = self._buffer

    def _capture_stop(self) -> None:
        _flush(sys.stdout)
        sys.stdout = self._saved_stdout  # also undoes a plugin that replaced sys.stdout
        text = self._buffer.getvalue()
        if self._saved_fd is not None and self._file is not None:
            _flush(sys.__stdout__)  # the plugin may have written to it directly
            os.dup2(self._saved_fd, 1)
            os.close(self._saved_fd)
            self._saved_fd = None
            self._file.seek(0)
            text += self._file.read(4 * MAX_OUTPUT + 4).decode("utf-8", "replace")
            self._file.close()
            self._file = None
        if len(text) > MAX_OUTPUT:
            text = text[:MAX_OUTPUT] + " ... (cut)"
        self.output = text
