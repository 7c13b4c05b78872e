"""The server's stdout and stderr: always drained, kept bounded, never a reason to fail.

A server may write 100 MB/s for the whole run, and the disk may be full. So both pipes are read
by one thread, whatever happens to the files (a server blocked on a full pipe would be measured
as hanging, because of the harness), and what is kept is bounded:

* `CappedLog` writes the first `head_bytes` of a stream to its file and keeps the last
  `tail_bytes` in memory; on close it appends that tail after a line saying how much was
  dropped in between. So the file never exceeds about head + tail, and the tail the report
  shows (`stderr_tail`) comes from memory, not from a file that may not exist.
* A failing write (ENOSPC, EIO, a removed folder) is caught: the log stops writing to its file,
  remembers the error in one sentence (`errors`, which the stop report carries), and the
  stream goes on being drained into the in-memory tail.
* Before the ready line is found, stdout is handed to the ready-line reader instead
  (`take_stdout`); the hand-over buffer is bounded too: past it, the pump stops reading stdout
  until the reader catches up (a server flooding stdout before its ready line is not-ready).
"""

from __future__ import annotations

import os
import selectors
import threading
from collections import deque
from pathlib import Path
from typing import IO, Dict, List, Optional, Tuple

HEAD_BYTES = 512 * 1024  # per stream, kept in the file as written
TAIL_BYTES = 512 * 1024  # per stream, kept in memory and appended to the file at close
HANDOVER_MAX = 2 << 20  # stdout bytes waiting for the ready-line reader
_READ_SIZE = 65536
_SELECT_SLICE_S = 0.1
_READS_PER_TURN = 16  # per ready fd and select(), so that neither stream starves the other


class CappedLog:
    """One stream's log: a head in a file, a tail in memory. Thread-safe."""

    def __init__(self, path: Optional[Path], head_bytes: int = HEAD_BYTES, tail_bytes: int = TAIL_BYTES) -> None:
        self.path = path
        self._head_left = head_bytes
        self._tail: deque[bytes] = deque()
        self._tail_size = 0
        self._tail_max = tail_bytes
        self._head_written = 0
        self._total = 0
        self._lock = threading.Lock()
        self._file: Optional[IO[bytes]] = None
        self.errors: List[str] = []
        if path is not None:
            try:
                self._file = open(path, "ab")  # noqa: SIM115 - held for the server's life, closed in close()
            except OSError as error:
                self._note("cannot open %s: %s" % (path, error.strerror or error))

    @property
    def total_bytes(self) -> int:
        return self._total

    @property
    def dropped_bytes(self) -> int:
        """Bytes in neither the file's head nor the in-memory tail."""
        return max(0, self._total - self._head_written - min(self._tail_size, self._tail_max))

    def write(self, data: bytes) -> None:
        """Keep `data`: in the file while the head has room, and in the tail always."""
        if not data:
            return
        with self._lock:
            self._total += len(data)
            if self._file is not None and self._head_left > 0:
                head = data[: self._head_left]
                self._head_left -= len(head)
                if self._write_file(head):
                    self._head_written += len(head)
            self._tail.append(bytes(data))
            self._tail_size += len(data)
            while self._tail_size - len(self._tail[0]) >= self._tail_max:
                self._tail_size -= len(self._tail.popleft())

    def tail_text(self, max_bytes: int = 64 * 1024) -> str:
        """The last `max_bytes` written (from memory; also after close)."""
        with self._lock:
            chunks: List[bytes] = []
            size = 0
            for chunk in reversed(self._tail):
                chunks.append(chunk)
                size += len(chunk)
                if size >= max_bytes:
                    break
        return b"".join(reversed(chunks))[-max_bytes:].decode("utf-8", errors="replace")

    def close(self) -> None:
        """Append what the head did not hold (after a line saying how much was dropped) from
        the tail, then close the file."""
        with self._lock:
            if self._file is None:
                return
            missing = self._total - self._head_written
            if missing > 0:
                kept = min(missing, self._tail_size, self._tail_max)
                if missing > kept:
                    self._write_file(b"\n[hangbench: %d bytes of output dropped here]\n" % (missing - kept))
                self._write_file(b"".join(self._tail)[-kept:])
            if self._file is not None:
                try:
                    self._file.close()
                except OSError as error:
                    self._note("cannot close %s: %s" % (self.path, error.strerror or error))
                self._file = None

    def _write_file(self, data: bytes) -> bool:
        if self._file is None:
            return False
        try:
            self._file.write(data)
            self._file.flush()
            return True
        except (OSError, ValueError) as error:
            self._note("cannot write %s: %s" % (self.path, getattr(error, "strerror", None) or error))
            try:
                self._file.close()
            except OSError:
                pass
            self._file = None  # keep draining into the tail; the file is lost
            return False

    def _note(self, message: str) -> None:
        if len(self.errors) < 5:
            self.errors.append(message)


class OutputPump:
    """Drains a server's stdout and stderr pipes in one thread until EOF on both or `stop()`."""

    def __init__(self, stdout_fd: int, stderr_fd: int, stdout_log: CappedLog, stderr_log: CappedLog) -> None:
        self.stdout_log = stdout_log
        self.stderr_log = stderr_log
        self._fds: Dict[int, CappedLog] = {stdout_fd: stdout_log, stderr_fd: stderr_log}
        self._stdout_fd = stdout_fd
        self._handover = bytearray()
        self._handing_over = True
        self._stdout_eof = False
        self._cond = threading.Condition()
        self._stop = threading.Event()
        for fd in self._fds:
            os.set_blocking(fd, False)
        self._thread = threading.Thread(target=self._run, name="hangbench-output-%d" % stdout_fd, daemon=True)
        self._thread.start()

    def take_stdout(self, timeout_s: float) -> Tuple[bytes, bool]:
        """(stdout bytes since the last call, EOF seen): for the ready-line reader."""
        with self._cond:
            if not self._handover and not self._stdout_eof:
                self._cond.wait(max(0.0, timeout_s))
            data = bytes(self._handover)
            self._handover.clear()
            self._cond.notify_all()
            return data, self._stdout_eof and not data

    def end_handover(self, rest: bytes = b"") -> None:
        """The ready line was found (or given up on): from now on stdout goes to its log."""
        with self._cond:
            self.stdout_log.write(rest + bytes(self._handover))
            self._handover.clear()
            self._handing_over = False
            self._cond.notify_all()

    def stop(self, timeout_s: float) -> None:
        """Read what is left (bounded), stop the thread, close the logs."""
        self._stop.set()
        self._thread.join(timeout_s)
        self.end_handover()
        self.stdout_log.close()
        self.stderr_log.close()

    @property
    def errors(self) -> List[str]:
        return self.stdout_log.errors + self.stderr_log.errors

    def _run(self) -> None:
        open_fds = set(self._fds)
        with selectors.DefaultSelector() as selector:
            for fd in open_fds:
                selector.register(fd, selectors.EVENT_READ)
            while open_fds and not self._stop.is_set():
                self._pause_stdout_if_full(selector, open_fds)
                for key, _ in selector.select(timeout=_SELECT_SLICE_S):
                    if not self._drain(int(key.fd)):
                        selector.unregister(key.fd)
                        open_fds.discard(int(key.fd))
            for fd in open_fds:  # stop(): what is readable now, bounded
                self._drain(fd)
        with self._cond:
            self._stdout_eof = self._stdout_eof or self._stdout_fd not in open_fds
            self._cond.notify_all()

    def _pause_stdout_if_full(self, selector: selectors.BaseSelector, open_fds: set) -> None:
        """Back-pressure on stdout while the ready-line reader has HANDOVER_MAX bytes unread."""
        if self._stdout_fd not in open_fds:
            return
        with self._cond:
            full = self._handing_over and len(self._handover) >= HANDOVER_MAX
        registered = self._stdout_fd in selector.get_map()
        if full and registered:
            selector.unregister(self._stdout_fd)
        elif not full and not registered:
            selector.register(self._stdout_fd, selectors.EVENT_READ)

    def _drain(self, fd: int) -> bool:
        """Read what is available; False at EOF (or on an error that ends the stream)."""
        for _ in range(_READS_PER_TURN):
            try:
                chunk = os.read(fd, _READ_SIZE)
            except BlockingIOError:
                return True
            except OSError:
                chunk = b""
            if not chunk:
                if fd == self._stdout_fd:
                    with self._cond:
                        self._stdout_eof = True
                        self._cond.notify_all()
                return False
            self._keep(fd, chunk)
        return True

    def _keep(self, fd: int, chunk: bytes) -> None:
        if fd == self._stdout_fd:
            with self._cond:
                if self._handing_over:
                    self._handover += chunk
                    self._cond.notify_all()
                    return
        self._fds[fd].write(chunk)
