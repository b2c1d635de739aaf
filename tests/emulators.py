"""Local object stores for tests: gcp-storage-emulator (gs://) and moto's S3 server (s3://).

Each runs as a child process on a free 127.0.0.1 port, is polled until it
answers (bounded deadline), and is stopped on exit. Nothing leaves the machine.

Both are started through this file (`python tests/emulators.py gcs|s3 ...`),
which calls the emulator's own entry point after two test-only adjustments:

- A settable clock. Object times (GCS `timeCreated`/`updated`, S3
  `LastModified`) come from a file the test writes (`Emulator.set_clock`),
  or from the real clock while it is empty. Tests thereby pick upload times:
  distinct or tied, and in summer, where the DST trap of BEAM_NOTES 6 shows,
  whatever the date the suite runs on.
- GCS metadata patches move `updated`, as on real GCS (the emulator leaves it
  at the upload time), so that BEAM_NOTES 11 can be tested.
- GCS preconditions. gcp-storage-emulator ignores `ifGenerationMatch` and
  `ifGenerationNotMatch` (it writes and deletes unconditionally) and serves the
  current object whatever `generation` a read names. The harness checks them
  as GCS documents: a failed precondition is `412 Precondition Failed`
  (`ifGenerationMatch=0` means "only if absent"), a read of a generation that
  is no longer the live one is `404`. moto's S3 server honours `If-None-Match`
  and `If-Match` on its own, but checks them and then writes, on the thread of
  each request: a delete in between let a put `If-Match` re-create the object
  (9 of 500 tries), where S3 refuses it. The harness runs moto's puts and
  deletes one at a time, so each condition holds for the write it guards.
"""

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
START_SECONDS = 30.0  # deadline for a server to answer
STOP_SECONDS = 10.0
_POLL_SECONDS = 0.05


class Emulator:
    """A storage server running as a child process; see `gcs_emulator` and `s3_server`."""

    def __init__(self, kind: str, port: int, process: subprocess.Popen, clock_file: Path, log: Path) -> None:
        self.kind = kind
        self.port = port
        self.url = f"http://{HOST}:{port}"
        self.process = process
        self._clock_file = clock_file
        self.log = log

    def set_clock(self, seconds: float | None) -> None:
        """Object times from now on: `seconds` (UNIX, UTC), or the real clock for None."""
        tmp = self._clock_file.with_suffix(".tmp")
        tmp.write_text("" if seconds is None else repr(float(seconds)))
        os.replace(tmp, self._clock_file)  # the server never reads half a value

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_SECONDS)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status < 500
    except urllib.error.HTTPError as err:
        return err.code < 500
    except OSError:
        return False


@contextmanager
def _serve(kind: str, workdir: Path, ready_path: str) -> Iterator[Emulator]:
    workdir.mkdir(parents=True, exist_ok=True)
    clock_file = workdir / f"{kind}-clock"
    clock_file.write_text("")
    # A port found free can be taken before the child binds it: try a few.
    for attempt in range(3):
        port = free_port()
        log = workdir / f"{kind}-{port}.log"
        with open(log, "wb") as log_handle:
            process = subprocess.Popen(
                [sys.executable, __file__, kind, str(port), str(clock_file)],
                stdout=log_handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        emulator = Emulator(kind, port, process, clock_file, log)
        deadline = time.monotonic() + START_SECONDS
        while process.poll() is None and time.monotonic() < deadline:
            if _answers(emulator.url + ready_path):
                break
            time.sleep(_POLL_SECONDS)
        else:
            exited = process.poll() is not None
            emulator.stop()
            if exited and attempt < 2:
                continue  # most likely the port was taken meanwhile: another one
            raise RuntimeError(
                f"{kind} server did not answer on {emulator.url} within {START_SECONDS:.0f} s:\n"
                + log.read_text(errors="replace")[-3000:]
            )
        break
    try:
        yield emulator
    finally:
        emulator.stop()


@contextmanager
def gcs_emulator(workdir: Path) -> Iterator[Emulator]:
    """gcp-storage-emulator, in memory; point clients at it with STORAGE_EMULATOR_HOST=emulator.url."""
    with _serve("gcs", workdir, "/storage/v1/b") as emulator:
        yield emulator


@contextmanager
def s3_server(workdir: Path) -> Iterator[Emulator]:
    """moto's S3 server (any keys accepted); clients use endpoint_url=server.url."""
    with _serve("s3", workdir, "/moto-api/data.json") as server:
        yield server


# --- the child process ----------------------------------------------------------------------


def _clock(clock_file: str) -> Callable[[], datetime]:
    def now() -> datetime:
        try:
            text = Path(clock_file).read_text().strip()
        except OSError:
            text = ""
        if not text:
            return datetime.now(timezone.utc)
        return datetime.fromtimestamp(float(text), timezone.utc)

    return now


def _run_gcs(port: str, clock_file: str) -> None:
    from gcp_storage_emulator import __main__ as cli  # noqa: PLC0415
    from gcp_storage_emulator.handlers import objects  # noqa: PLC0415

    now = _clock(clock_file)

    class _ClockedDatetime(datetime):
        @classmethod
        def now(cls, tz=None):  # noqa: ANN001, ANN206
            return now().astimezone(tz) if tz else now().replace(tzinfo=None)

    objects.datetime = _ClockedDatetime  # timeCreated and updated of new objects
    patch = objects._patch

    def patch_moving_updated(storage, bucket_name, object_id, metadata):  # noqa: ANN001, ANN202
        obj = patch(storage, bucket_name, object_id, metadata)
        if obj:
            obj["updated"] = now().strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            storage.patch_object(bucket_name, object_id, obj)
        return obj

    objects._patch = patch_moving_updated
    _check_gcs_preconditions()
    cli.main(["start", "--host", HOST, "--port", port, "--in-memory", "--quiet"])


def _check_gcs_preconditions() -> None:
    """Makes every object handler honour GCS's generation preconditions (see the module doc)."""
    from http import HTTPStatus  # noqa: PLC0415

    from gcp_storage_emulator import server  # noqa: PLC0415
    from gcp_storage_emulator.exceptions import NotFound  # noqa: PLC0415
    from gcp_storage_emulator.handlers import objects  # noqa: PLC0415

    not_held = "At least one of the pre-conditions you specified did not hold."  # GCS's own words

    def refuse(response, status: HTTPStatus, message: str) -> None:  # noqa: ANN001
        response.status = status
        response.json({"error": {"code": status.value, "message": message, "errors": [{"message": message}]}})

    def object_name(request) -> str | None:  # noqa: ANN001
        name = request.params.get("object_id")
        if name is None and request.query.get("name"):
            name = request.query["name"][0]
        if name is None and request.method == "POST" and request.query.get("uploadType") == ["multipart"]:
            name = (request.data.get("meta") or {}).get("name")
        return name

    def checked(handler):  # noqa: ANN001, ANN202
        def handle(request, response, storage, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
            query = request.query
            wanted = {
                k: query[k][0] for k in ("ifGenerationMatch", "ifGenerationNotMatch", "generation") if query.get(k)
            }
            name = object_name(request) if wanted else None
            if name is not None:
                try:
                    current = storage.get_file_obj(request.params["bucket_name"], name)["generation"]
                except NotFound:
                    current = None
                is_read = request.method == "GET"
                if "generation" in wanted and is_read and current != wanted["generation"]:
                    return refuse(response, HTTPStatus.NOT_FOUND, f"No such object generation: {name}")
                match = wanted.get("ifGenerationMatch")
                if match is not None and (current or "0") != match:
                    if current is None and match != "0" and request.method in ("GET", "DELETE"):
                        return refuse(response, HTTPStatus.NOT_FOUND, f"No such object: {name}")
                    return refuse(response, HTTPStatus.PRECONDITION_FAILED, not_held)
                not_match = wanted.get("ifGenerationNotMatch")
                if not_match is not None and (current or "0") == not_match:
                    return refuse(response, HTTPStatus.PRECONDITION_FAILED, not_held)
            return handler(request, response, storage, *args, **kwargs)

        return handle

    for _, handlers in server.HANDLERS:
        for method, handler in list(handlers.items()):
            if getattr(handler, "__module__", "") == objects.__name__:
                handlers[method] = checked(handler)
    objects.insert = checked(objects.insert)  # the server's fallback for uploads looks it up here


def _run_s3(port: str, clock_file: str) -> None:
    import threading  # noqa: PLC0415

    import moto.s3.models  # noqa: PLC0415
    from moto.s3.responses import S3Response  # noqa: PLC0415
    from moto.server import main  # noqa: PLC0415

    now = _clock(clock_file)
    moto.s3.models.utcnow = lambda: now().replace(tzinfo=None)  # moto keeps naive UTC
    one_at_a_time = threading.Lock()

    def serialised(handler: Callable[..., Any]) -> Callable[..., Any]:
        def handle(*args: Any, **kwargs: Any) -> Any:
            with one_at_a_time:
                return handler(*args, **kwargs)

        return handle

    for name in ("put_object", "delete_object"):
        setattr(S3Response, name, serialised(getattr(S3Response, name)))
    main(["-H", HOST, "-p", port])


if __name__ == "__main__":
    _kind, _port, _clock_file = sys.argv[1:4]
    {"gcs": _run_gcs, "s3": _run_s3}[_kind](_port, _clock_file)
