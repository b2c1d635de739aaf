"""The output location's lock: one run at a time, and a record of the run that last held it.

A run holds `<output>/_LOCK.json` from before it changes anything in the
location until its last step, which removes it once `_SUCCESS` (or a failed
summary) is written. The lock is taken with the store's own atomic
create-if-absent, so two runs cannot both take it:

- local disk: an exclusive `flock` on the file, held by the launching process
  for as long as it lives. The kernel drops it when the process dies, however
  it dies (SIGKILL included), so a lock without a live holder is known at once.
- gs://: an upload with `ifGenerationMatch=0` (absent) or the generation read
  (replace); s3://: a put with `If-None-Match: *` or `If-Match: <ETag>`.
  Other Beam filesystems have no such write: there the lock is checked, then
  written (pipeline/lock_files.py holds these operations).
  Whether the holder still lives is read from the lock: on the same machine
  by its process (pid and start time, which no other process can share), from
  another machine by its heartbeat, which the launcher refreshes every
  HEARTBEAT_SECONDS and which lapses LEASE_SECONDS after the last refresh.

A lock whose holder is gone (killed, crashed, stopped) marks the location as
an unfinished run of this tool: `--overwrite` takes it back, and may then
remove every file of the output layout it finds there (the killed run's
temporary and final-named files alike), as well as the files the run before
it listed. Without `--overwrite` such a location is refused, as a finished run is.
"""

import dataclasses
import errno
import fcntl
import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import orjson
from apache_beam.io.filesystem import BeamIOError, CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline import TOOL_NAME
from pipeline.lock_files import LockFile, lock_file
from pipeline.stores import StoreError
from transforms import os_error_text, read_all

_LOG = logging.getLogger(__name__)

LOCK_FILE = "_LOCK.json"
HEARTBEAT_SECONDS = 60
# A lock not refreshed for this long, held from another machine, is abandoned:
# five missed heartbeats, so that a slow store or a busy launcher never loses it.
LEASE_SECONDS = 300
# A job launched with --no-wait has no launcher left to refresh its lock; its
# last step removes the lock. Should it never get there, the lock lapses after
# this long (a day: longer than any run this tool is meant for).
NO_WAIT_LEASE_SECONDS = 24 * 3600
# Tries at taking an object-store lock that keeps changing under us.
_ATTEMPTS = 5
RUNNING = "running"
ENDED = "ended"


class LockError(Exception):
    """The output location is held by another run, or by an unfinished one and no --overwrite."""


@dataclasses.dataclass(frozen=True)
class Holder:
    """What a lock says about the run that holds (or held) it."""

    run_id: str
    state: str  # RUNNING, or ENDED once the run stopped without finishing
    host: str
    boot_id: str | None
    pid: int | None  # None for a --no-wait launch: no process vouches for the job
    pid_start: int | None
    started: str
    heartbeat: float
    lease_seconds: int
    stopped_by: str | None = None
    previous_files: tuple[str, ...] = ()

    def to_bytes(self) -> bytes:
        fields = dataclasses.asdict(self)
        fields["previous_files"] = list(self.previous_files)
        return orjson.dumps({"tool": TOOL_NAME, **fields}, option=orjson.OPT_INDENT_2) + b"\n"

    @classmethod
    def from_bytes(cls, data: bytes) -> "Holder | None":
        """The holder a lock file describes, or None when it is not a lock of this tool."""
        try:
            fields = orjson.loads(data)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(fields, dict) or fields.pop("tool", None) != TOOL_NAME:
            return None
        try:
            holder = cls(**fields)
        except TypeError:
            return None
        if not isinstance(holder.run_id, str) or not isinstance(holder.previous_files, list):
            return None
        if not all(isinstance(p, str) for p in holder.previous_files):
            return None
        return dataclasses.replace(holder, previous_files=tuple(holder.previous_files))

    def describe(self) -> str:
        """"run <id> (started <time> on <host>, process <pid>)", for messages."""
        where = f"on {self.host}" + (f", process {self.pid}" if self.pid else "")
        return f"run {self.run_id} (started {self.started} {where})"


# --- Who we are, and whether a holder still lives --------------------------------------------


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            return handle.read().strip()
    except OSError:
        return None


def boot_id() -> str | None:
    """This machine's boot id (Linux), which tells a pid of this boot from one of the last."""
    return _read_text("/proc/sys/kernel/random/boot_id")


def process_start(pid: int) -> int | None:
    """When process `pid` started, in clock ticks since boot (Linux), or None if it does not exist."""
    stat = _read_text(f"/proc/{pid}/stat")
    if not stat:
        return None
    # The command name (field 2) may hold spaces and parentheses: count from its end.
    fields = stat[stat.rfind(")") + 2 :].split()
    try:
        return int(fields[19])  # field 22, starttime
    except (IndexError, ValueError):
        return None


def holder_alive(holder: Holder, now: float) -> bool:
    """Whether the run a lock names may still be running.

    A process on this machine is checked directly; one elsewhere is taken for
    alive until its heartbeat is more than its lease old.
    """
    if holder.state != RUNNING:
        return False
    same_machine = holder.host == socket.gethostname() and holder.boot_id is not None and holder.boot_id == boot_id()
    if same_machine and holder.pid is not None and holder.pid_start is not None:
        return process_start(holder.pid) == holder.pid_start
    return now < holder.heartbeat + holder.lease_seconds


def _utc(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- The lock a run holds ---------------------------------------------------------------------

_HELD: "set[OutputLock]" = set()  # locks this process holds, for the signal handlers' clean-up
_HELD_GUARD = threading.Lock()


class OutputLock:
    """This run's hold on an output location; see the module docstring.

    Attributes:
      output: the output location.
      holder: what the lock says now.
      taken_from: the holder of the unfinished run this run took the location
        from (with --overwrite), or None when the lock was free.
    """

    def __init__(self, output: str, holder: Holder, taken_from: Holder | None) -> None:
        self.output = output
        self.path = FileSystems.join(output, LOCK_FILE)
        self.holder = holder
        self.taken_from = taken_from
        self._store: LockFile | None = None
        self._version: Any = None
        self._fd: int | None = None
        self._created: list[str] = []  # local folders made for the lock, deepest first
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    @classmethod
    def acquire(
        cls,
        output: str,
        run_id: str,
        *,
        overwrite: bool,
        wait: bool = True,
        options: PipelineOptions | None = None,
        now: float | None = None,
    ) -> "OutputLock":
        """Takes the lock of `output` for run `run_id`.

        Args:
          output: the output location (local path, gs:// or s3:// URL).
          run_id: this run's id, written into the lock.
          overwrite: whether an unfinished run's lock may be taken back.
          wait: whether this process waits for the job (and so can vouch for it).
          options: configure the store clients as Beam's filesystems are.
          now: the clock, for tests.

        Raises:
          LockError: another run holds the location; or an unfinished run
            held it and `overwrite` is not set; or `_LOCK.json` is not ours.
          StoreError, OSError: the store refused the request.
        """
        started = time.time() if now is None else now
        holder = Holder(
            run_id=run_id,
            state=RUNNING,
            host=socket.gethostname(),
            boot_id=boot_id(),
            pid=os.getpid() if wait else None,
            pid_start=process_start(os.getpid()) if wait else None,
            started=_utc(started),
            heartbeat=started,
            lease_seconds=LEASE_SECONDS if wait else NO_WAIT_LEASE_SECONDS,
        )
        lock = cls(output, holder, None)
        if FileSystems.get_scheme(output) is None:
            lock._acquire_local(overwrite)
        else:
            lock._acquire_object(overwrite, options, started)
        with _HELD_GUARD:
            _HELD.add(lock)
        return lock

    def _acquire_local(self, overwrite: bool) -> None:
        folder = os.path.abspath(self.output)
        while not os.path.exists(folder) and os.path.dirname(folder) != folder:
            self._created.append(folder)
            folder = os.path.dirname(folder)
        os.makedirs(self.output, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                os.close(fd)
                if err.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                holder = Holder.from_bytes(_read_local(self.path))
                raise LockError(_held_message(self.output, holder)) from None
            # The holder before us may have removed the file between our open
            # and our flock: then the lock is whatever the path names now.
            if os.path.exists(self.path) and os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                break
            os.close(fd)
        self._fd = fd
        previous = b""
        try:
            previous = _read_fd(fd)
            if previous:
                self._take_over(Holder.from_bytes(previous), overwrite)
            self._write_local()
        except BaseException:
            if not previous:
                os.unlink(self.path)  # ours alone: leave the location as it was
                self._remove_created_folders()
            self._close()
            raise

    def _acquire_object(self, overwrite: bool, options: PipelineOptions | None, now: float) -> None:
        self._store = lock_file(self.path, options)
        for _ in range(_ATTEMPTS):
            version = self._store.write(self.holder.to_bytes(), None)
            if version is not None:
                self._version = version
                break
            found = self._store.read()
            if found is None:
                continue  # released meanwhile: try again
            data, version = found
            previous = Holder.from_bytes(data)
            if previous is not None and holder_alive(previous, now):
                raise LockError(_held_message(self.output, previous))
            self._take_over(previous, overwrite)
            new_version = self._store.write(self.holder.to_bytes(), version)
            if new_version is not None:
                self._version = new_version
                break
            # Another run took it first, or it was released: look again.
        else:
            raise LockError(
                f"output location {self.output!r}: its {LOCK_FILE} kept changing while this run "
                "tried to take it; is another run starting there?"
            )
        self._start_heartbeat()

    def _take_over(self, previous: Holder | None, overwrite: bool) -> None:
        """Checks that an abandoned lock may be taken, and carries its record over."""
        if previous is None:
            raise LockError(
                f"output location {self.output!r} holds a {LOCK_FILE} that is not this tool's; "
                "choose another location"
            )
        if not overwrite:
            ended = f"it ended: {previous.stopped_by}" if previous.stopped_by else "it is no longer running"
            raise LockError(
                f"output location {self.output!r} holds the unfinished {previous.describe()}; "
                f"{ended}. Pass --overwrite to replace it"
            )
        self.taken_from = previous
        self.holder = dataclasses.replace(self.holder, previous_files=previous.previous_files)
        _LOG.warning("taking the output location over from the unfinished %s", previous.describe())

    def record_previous_files(self, files: Sequence[str]) -> None:
        """Notes the files found in the location, so that a retry knows them as ours too."""
        merged = tuple(sorted(set(self.holder.previous_files) | set(files)))
        if merged != self.holder.previous_files:
            self._update(dataclasses.replace(self.holder, previous_files=merged))

    def end(self, stopped_by: str) -> None:
        """Marks the lock as left by a run that stopped without finishing; --overwrite takes it.

        A run that stopped before it wrote anything (the location holds its
        lock alone) leaves the location as it found it: the lock is removed.
        A lock that the run's last step already removed, or that is no longer
        this run's, is left alone.
        """
        try:
            if self.holds():
                if self._holds_nothing_else():
                    self.release()
                    return
                self._update(dataclasses.replace(self.holder, state=ENDED, stopped_by=stopped_by))
        except (StoreError, BeamIOError, OSError) as err:
            _LOG.warning("could not mark the lock of %s as ended: %s", self.output, err)
        self._close()

    def _holds_nothing_else(self) -> bool:
        if self.taken_from is not None or self.holder.previous_files:
            return False
        (found,) = FileSystems.match([FileSystems.join(self.output, "**")])
        return [m.path for m in found.metadata_list] == [self.path]

    def release(self) -> None:
        """Removes the lock (when it is still this run's) and stops holding it."""
        self._stop.set()
        with self._guard:
            if self._fd is not None:
                if self.holds():
                    os.unlink(self.path)
                self._remove_created_folders()
            elif self._store is not None and self._version is not None:
                self._store.delete(self._version)
                self._version = None
        self._close()

    def detach(self) -> None:
        """Stops holding the lock here and leaves it in place, for the job to remove (--no-wait)."""
        self._close()

    def holds(self) -> bool:
        """Whether the lock in the location is still this run's."""
        if self._fd is not None:
            try:
                return os.stat(self.path).st_ino == os.fstat(self._fd).st_ino
            except FileNotFoundError:
                return False
        if self._store is None:
            return False
        found = self._store.read()
        return found is not None and found[1] == self._version

    def _update(self, holder: Holder) -> None:
        with self._guard:
            if self._fd is not None:
                self.holder = holder
                self._write_local()
                return
            if self._store is None or self._version is None:
                return
            version = self._store.write(holder.to_bytes(), self._version)
            if version is None:
                self._version = None
                raise StoreError(f"{self.path}: the lock is no longer this run's")
            self.holder, self._version = holder, version

    def _write_local(self) -> None:
        assert self._fd is not None
        data = self.holder.to_bytes()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)
        os.fsync(self._fd)

    def _start_heartbeat(self) -> None:
        if self.holder.pid is None:
            return  # --no-wait: this process leaves; the lease covers the job
        self._heartbeat = threading.Thread(target=self._beat, name="output-lock-heartbeat", daemon=True)
        self._heartbeat.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                self._update(dataclasses.replace(self.holder, heartbeat=time.time()))
            except (StoreError, OSError) as err:
                # The run's last step removed the lock, or the store is out of
                # reach for now: nothing to refresh, or try again next time.
                if self._version is None:
                    return
                _LOG.warning("could not refresh the lock of %s: %s", self.output, err)

    def _remove_created_folders(self) -> None:
        for folder in self._created:
            if os.path.isdir(folder) and not os.listdir(folder):
                os.rmdir(folder)

    def _close(self) -> None:
        self._stop.set()
        with self._guard:
            if self._fd is not None:
                os.close(self._fd)  # drops the flock
                self._fd = None
        with _HELD_GUARD:
            _HELD.discard(self)


def held_locks() -> list[OutputLock]:
    """The locks this process holds now (for clean-up when it is told to stop)."""
    with _HELD_GUARD:
        return list(_HELD)


def _held_message(output: str, holder: Holder | None) -> str:
    who = holder.describe() if holder is not None else "another run, which is starting"
    return (
        f"output location {output!r} is in use by {who}; two runs never write one location "
        "at once: wait for that run to end (or stop it), then run again"
    )


def _read_fd(fd: int) -> bytes:
    parts = []
    offset = 0
    while chunk := os.pread(fd, 1 << 16, offset):
        parts.append(chunk)
        offset += len(chunk)
    return b"".join(parts)


def _read_local(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return b""


def release_run_lock(output: str, run_id: str) -> None:
    """The run's last step: removes the lock if it is still run `run_id`'s.

    Runs on a worker, through Beam's filesystems. A lock that names another run
    (one that took the location over) is left alone.

    Raises:
      OSError: the lock cannot be read or removed.
    """
    path = FileSystems.join(output, LOCK_FILE)
    for attempt in range(_ATTEMPTS):
        try:
            with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
                data = read_all(handle)
            break
        # The launcher's heartbeat may replace the lock while it is read (a
        # store's reader then fails in its own terms): read it again.
        except Exception as err:
            if not FileSystems.exists(path):
                return
            if attempt == _ATTEMPTS - 1:
                raise OSError(f"{path}: cannot be read ({os_error_text(err)})") from err
            time.sleep(0.1 * (attempt + 1))
    holder = Holder.from_bytes(data)
    if holder is None or holder.run_id != run_id:
        _LOG.warning("%s no longer names this run; left in place", path)
        return
    FileSystems.delete([path])
