"""Object stores behind gs:// and s3:// URLs: listings with upload times, write probes, readable errors.

Beam's FileSystems read and write these stores; three things they get wrong
for this tool are done here with the stores' own clients, configured exactly
as Beam configures them (same credentials, same --s3_* options):

- Upload time. Beam's listings turn timestamps into seconds with
  `time.mktime`, an hour early for summer times when the process runs in a
  DST zone (BEAM_NOTES 6); here the stores' time-zone-aware datetimes are
  converted with `.timestamp()`, which does not depend on the zone. On GCS
  the upload time is `time_created`, not Beam's `updated`, which moves when
  someone merely edits an object's metadata (BEAM_NOTES 11). On S3 it is
  `LastModified`: S3 objects are immutable, so that is when the bytes were
  stored.
- Errors. A missing bucket, missing or rejected credentials and denied
  access become one readable sentence (a `StoreError`), instead of a nested
  `BeamIOError`, a silent empty match (Beam's S3 listing treats a missing
  bucket as "no files"), or a traceback logged by Beam's S3 writer.
- Writability, checked by writing and deleting one small object.
- Reading. An object is read at the version that was listed (GCS
  generation, S3 ETag, as a precondition of every request), so that one that
  vanished or changed since is refused with a sentence saying so, never read
  half old, half new. Reads are ranged requests of the size asked for (the
  pipeline asks 8 MiB at a time); Beam's GCS handle is slower and neither
  pins a version nor tells a vanished object from a failing store. The
  ReadRawLines stage reads objects on the workers with the ObjectOpener that
  `opener_factory` makes (see transforms/read.py).
"""


import functools
import io
import re
import uuid
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, NamedTuple

from apache_beam.io.filesystem import FileSystem
from apache_beam.options.pipeline_options import PipelineOptions

from transforms.read import InputChanged, InputVanished

_URL = re.compile(r"(gs|s3)://([^/]*)/?(.*)", re.DOTALL)
_GLOB = re.compile(r"[^[*?]*")  # the literal part of a pattern, before its first wildcard
PROBE_PREFIX = "probe-"

_GCS_CREDENTIALS_HELP = (
    "run `gcloud auth application-default login`, set GOOGLE_APPLICATION_CREDENTIALS "
    "to a service-account key file, or run where a service account is attached"
)
_AWS_CREDENTIALS_HELP = (
    "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), run where an "
    "IAM role is attached, or pass --s3_access_key_id and --s3_secret_access_key"
)


class StoreError(Exception):
    """A request to an object store failed for a reason the user must fix."""


class StoredObject(NamedTuple):
    """One object: its URL, size in bytes, upload time (UNIX seconds, UTC) and version.

    The version identifies the bytes listed: a GCS generation, an S3 ETag,
    a local file's modification time.
    """

    path: str
    size: int
    upload_time: float
    version: str = ""


def _split(url: str) -> tuple[str, str, str]:
    parts = _URL.fullmatch(url)
    if parts is None or not parts.group(2):
        raise StoreError(f"{url!r} is not a gs://bucket/… or s3://bucket/… URL")
    scheme, bucket, key = parts.groups()
    return scheme, bucket, key


def match_objects(pattern: str, options: PipelineOptions | None = None) -> list[StoredObject]:
    """The objects a glob pattern matches, with their upload times.

    The glob syntax is Beam's (`*` stays within one `/` segment, `**` crosses
    them), but for a pattern ending in `/` (or naming a bucket alone), which
    means every object below that prefix, at any depth: Beam appends `*`,
    which stays within one level. One listing of the pattern's literal
    prefix, however many objects match. Keys are taken as they are: `a//b`
    and `a/b` are different objects.

    Raises:
      StoreError: the bucket does not exist, credentials are missing or
        refused, or the store cannot be reached.
    """
    scheme, bucket, key = _split(pattern)
    if not key or key.endswith("/"):
        key += "**"
    prefix = _GLOB.match(key).group(0)  # type: ignore[union-attr]
    wanted = re.compile(FileSystem.translate_pattern(f"{scheme}://{bucket}/{key}"))
    return [o for o in _list(scheme, bucket, prefix, options) if wanted.match(o.path)]


def list_objects(folder: str, options: PipelineOptions | None = None) -> list[StoredObject]:
    """Every object below `folder` (a gs:// or s3:// URL), in one listing.

    Raises:
      StoreError: as `match_objects`.
    """
    scheme, bucket, key = _split(folder)
    prefix = key.rstrip("/") + "/" if key.strip("/") else ""
    return _list(scheme, bucket, prefix, options)


def probe_writable(folder: str, options: PipelineOptions | None = None) -> None:
    """Writes and deletes one small object, named so that nothing can collide, below `folder`.

    Raises:
      StoreError: the object cannot be written or deleted.
    """
    scheme, bucket, key = _split(folder)
    name = (key.rstrip("/") + "/" if key.strip("/") else "") + PROBE_PREFIX + uuid.uuid4().hex
    url = f"{scheme}://{bucket}/{name}"
    data = b"write probe of cloud-import-prep; safe to delete\n"
    options = options or PipelineOptions()
    if scheme == "gs":
        client = _gcs_client(options)
        blob = client.bucket(bucket).blob(name)
        _gcs_call(client, url, "write", lambda: blob.upload_from_string(data))
        _gcs_call(client, url, "delete", blob.delete)
    else:
        s3 = _s3_client(options)
        _s3_call(url, "write", lambda: s3.put_object(Bucket=bucket, Key=name, Body=data))
        _s3_call(url, "delete", lambda: s3.delete_object(Bucket=bucket, Key=name))


def _list(
    scheme: str, bucket: str, prefix: str, options: PipelineOptions | None
) -> list[StoredObject]:
    options = options or PipelineOptions()
    url = f"{scheme}://{bucket}/{prefix}"
    if scheme == "gs":
        client = _gcs_client(options)

        def gcs_listing() -> list[StoredObject]:
            blobs = client.list_blobs(
                bucket, prefix=prefix, fields="items(name,size,timeCreated,generation),nextPageToken"
            )
            return [
                StoredObject(
                    f"gs://{bucket}/{b.name}", int(b.size), b.time_created.timestamp(), str(b.generation)
                )
                for b in blobs
            ]

        return _gcs_call(client, url, "list", gcs_listing)
    s3 = _s3_client(options)

    def s3_listing() -> list[StoredObject]:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [
            StoredObject(
                f"s3://{bucket}/{o['Key']}", int(o["Size"]), o["LastModified"].timestamp(), o["ETag"]
            )
            for page in pages
            for o in page.get("Contents", ())
        ]

    return _s3_call(url, "list", s3_listing)


# --- reading one listed version -------------------------------------------------------------


class ObjectReader(io.RawIOBase):
    """A seekable, read-only view of one version of an object.

    Each read(n) is one ranged request for n bytes (fewer at the end), made
    through `fetch(start, length)`; nothing is read ahead, so callers read in
    large chunks. A response shorter than asked means the object is not the
    size listed: InputChanged.
    """

    def __init__(self, url: str, size: int, fetch: Callable[[int, int], bytes]) -> None:
        super().__init__()
        self.name = url
        self._size = size
        self._fetch = fetch
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._pos = base + offset
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        if self.closed:
            raise ValueError("I/O operation on closed file")
        left = self._size - self._pos
        wanted = left if size is None or size < 0 else min(size, left)
        if wanted <= 0:
            return b""
        data = self._fetch(self._pos, wanted)
        if len(data) != wanted:
            raise InputChanged(
                f"the object changed since it was listed (it ends before the {self._size} bytes listed)"
            )
        self._pos += wanted
        return data

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class ObjectOpener:
    """Opens listed gs:// and s3:// objects at the version listed.

    One client per store, made on first use from the pipeline's options (the
    credentials and --s3_* settings Beam's filesystems use), so that a worker
    builds it once, not per range.

    Args:
      options: the pipeline's options.
    """

    def __init__(self, options: PipelineOptions | None = None) -> None:
        self._options = options or PipelineOptions()
        self._clients: dict[str, Any] = {}

    def open(self, url: str, size: int, version: str) -> ObjectReader:
        """A reader of `url` at `version` (GCS generation, S3 ETag), `size` bytes long.

        Without a version (an object that was not listed), the version found
        now is pinned: one metadata request.

        Reads raise InputVanished or InputChanged when the object is gone or
        no longer that version, ConnectionError or TimeoutError when the store
        fails in a way that may pass (the caller should retry, not skip), and
        PermissionError or OSError when it refuses the request.
        """
        scheme, bucket, key = _split(url)
        if scheme not in self._clients:
            self._clients[scheme] = _gcs_client(self._options) if scheme == "gs" else _s3_client(self._options)
        client = self._clients[scheme]
        if scheme == "gs":
            return _open_gcs(client, url, bucket, key, size, version)
        return _open_s3(client, url, bucket, key, size, version)


def opener_factory(options: PipelineOptions | None) -> Callable[[], ObjectOpener]:
    """What ReadRawLines is given to open gs:// and s3:// objects on the workers.

    It pickles with the pipeline's options, and each DoFn instance calls it
    once, on its first object: one opener, so one client per store, per instance.
    """
    return functools.partial(ObjectOpener, options)


# --- Google Cloud Storage -------------------------------------------------------------------


def _gcs_client(options: PipelineOptions) -> Any:
    # The client Beam's own GCS filesystem builds: same credentials, same
    # endpoint (STORAGE_EMULATOR_HOST included).
    from apache_beam.io.gcp import gcsio  # noqa: PLC0415 (needs the gcp extra)

    return gcsio.create_storage_client(options)


def _gcs_call(client: Any, url: str, action: str, call: Any) -> Any:
    from google.api_core import exceptions as api  # noqa: PLC0415
    from google.auth import exceptions as auth  # noqa: PLC0415
    from google.auth.credentials import AnonymousCredentials  # noqa: PLC0415

    bucket = "gs://" + url[len("gs://") :].split("/", 1)[0]
    anonymous = isinstance(getattr(client, "_credentials", None), AnonymousCredentials)
    try:
        return call()
    except api.NotFound as err:
        if action == "delete":
            raise StoreError(f"cannot delete {url}: it vanished ({err.message})") from err
        raise StoreError(f"bucket {bucket} does not exist") from err
    except (api.Unauthorized, api.Forbidden, auth.GoogleAuthError) as err:
        # Without credentials Beam's client goes anonymous; a refusal then
        # surfaces as 401/403, or as the failed refresh of anonymous credentials.
        if anonymous:
            raise StoreError(
                f"no Google Cloud credentials found (Application Default Credentials), and "
                f"anonymous access to {bucket} was refused: {_GCS_CREDENTIALS_HELP}"
            ) from err
        if isinstance(err, auth.GoogleAuthError):
            raise StoreError(
                f"Google Cloud credentials are unusable ({err}): {_GCS_CREDENTIALS_HELP}"
            ) from err
        if isinstance(err, api.Unauthorized):
            raise StoreError(
                f"Google Cloud refused the credentials in use ({err.code} {err.message}): "
                f"{_GCS_CREDENTIALS_HELP}"
            ) from err
        raise StoreError(
            f"permission denied to {action} {url} ({err.code} {err.message}); the account "
            f"needs storage.objects.{_GCS_PERMISSION[action]} on {bucket}"
        ) from err
    except api.GoogleAPICallError as err:
        raise StoreError(f"cannot {action} {url}: {err.code} {err.message}") from err
    except OSError as err:  # requests' ConnectionError included
        raise StoreError(f"cannot reach Google Cloud Storage to {action} {url}: {err}") from err


_GCS_PERMISSION = {"list": "list", "read": "get", "write": "create", "delete": "delete"}


def _open_gcs(client: Any, url: str, bucket: str, key: str, size: int, version: str) -> ObjectReader:
    if not version:
        found = _gcs_read(url, version, lambda: client.bucket(bucket).get_blob(key))
        if found is None:
            raise InputVanished("the object does not exist")
        size, version = int(found.size), str(found.generation)
    blob = client.bucket(bucket).blob(key)
    generation = int(version)

    def fetch(start: int, length: int) -> bytes:
        # raw_download: the bytes as stored, also for objects stored with
        # Content-Encoding: gzip (the listed size is theirs). The precondition
        # makes GCS refuse (412) to serve any other generation.
        return _gcs_read(
            url,
            version,
            lambda: blob.download_as_bytes(
                start=start,
                end=start + length - 1,
                raw_download=True,
                if_generation_match=generation,
                checksum=None,  # GCS has no checksum of a byte range
            ),
        )

    return ObjectReader(url, size, fetch)


def _status(code: int | None) -> str:
    # The download errors' own messages repeat the request's URL and the
    # client's internals; the status says what happened.
    try:
        return f"{code} {HTTPStatus(code).phrase}"  # type: ignore[arg-type]
    except ValueError:
        return f"HTTP {code}"


def _gcs_read(url: str, version: str, call: Callable[[], Any]) -> Any:
    """Runs one read request; the store's errors become the sentences of InputVanished & co."""
    import requests  # noqa: PLC0415 (a dependency of google-cloud-storage)
    from google.api_core import exceptions as api  # noqa: PLC0415
    from google.auth import exceptions as auth  # noqa: PLC0415

    bucket = "gs://" + url[len("gs://") :].split("/", 1)[0]
    try:
        return call()
    except api.NotFound as err:
        raise InputVanished(f"the object vanished since it was listed ({_status(err.code)})") from err
    except (api.PreconditionFailed, api.RequestRangeNotSatisfiable) as err:
        raise InputChanged(
            f"the object changed since it was listed (generation {version} is no longer current)"
        ) from err
    except (api.Unauthorized, api.Forbidden) as err:
        raise PermissionError(
            f"permission denied ({_status(err.code)}); the account needs storage.objects.get on {bucket}"
        ) from err
    except api.GoogleAPICallError as err:
        if err.code is not None and (err.code in (408, 429) or err.code >= 500):
            raise ConnectionError(f"Google Cloud Storage failed: {_status(err.code)}") from err
        raise OSError(f"{_status(err.code)}: {err.message}") from err
    except api.RetryError as err:  # the client's own retries ran out of time
        raise TimeoutError(f"Google Cloud Storage did not answer in time ({err})") from err
    except (auth.TransportError, requests.exceptions.Timeout, requests.exceptions.ConnectionError,
            requests.exceptions.ChunkedEncodingError) as err:
        raise ConnectionError(f"cannot reach Google Cloud Storage ({err})") from err
    except auth.GoogleAuthError as err:
        if getattr(err, "retryable", False):
            raise ConnectionError(f"Google Cloud credentials could not be refreshed ({err})") from err
        raise PermissionError(f"Google Cloud credentials are unusable ({err})") from err


# --- Amazon S3 ------------------------------------------------------------------------------


def _s3_client(options: PipelineOptions) -> Any:
    # The boto3 client Beam's own S3 filesystem builds from the --s3_* options
    # (or, without them, from the AWS default credential chain).
    from apache_beam.io.aws.clients.s3 import boto3_client  # noqa: PLC0415 (needs the aws extra)

    return boto3_client.Client(options=options).client


def _s3_error(err: Any) -> tuple[str, str]:
    """The code and message of a botocore ClientError; the error's own text when S3 sent no message."""
    error = err.response.get("Error", {})
    return str(error.get("Code", "")), error.get("Message") or str(err)


def _s3_call(url: str, action: str, call: Any) -> Any:
    from botocore import exceptions as boto  # noqa: PLC0415

    bucket = "s3://" + url[len("s3://") :].split("/", 1)[0]
    try:
        return call()
    except boto.NoCredentialsError as err:
        raise StoreError(f"no AWS credentials found: {_AWS_CREDENTIALS_HELP}") from err
    except boto.PartialCredentialsError as err:
        raise StoreError(f"incomplete AWS credentials ({err}): {_AWS_CREDENTIALS_HELP}") from err
    except boto.ClientError as err:
        code, message = _s3_error(err)
        if code in ("NoSuchBucket", "404") and action != "delete":
            raise StoreError(f"bucket {bucket} does not exist") from err
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"):
            raise StoreError(
                f"AWS refused the credentials in use ({code}: {message}): {_AWS_CREDENTIALS_HELP}"
            ) from err
        if code in ("AccessDenied", "403", "AllAccessDisabled"):
            raise StoreError(
                f"permission denied to {action} {url} ({code}); the credentials in use need "
                f"{_S3_PERMISSION[action]} on {bucket}"
            ) from err
        raise StoreError(f"cannot {action} {url}: {code}: {message}") from err
    except boto.BotoCoreError as err:  # endpoint unreachable, bad region, …
        raise StoreError(f"cannot {action} {url}: {err}") from err


_S3_PERMISSION = {"list": "s3:ListBucket", "read": "s3:GetObject", "write": "s3:PutObject", "delete": "s3:DeleteObject"}
# Answers after which the same request may well succeed.
_S3_TRANSIENT = frozenset({
    "InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "Throttling",
    "ThrottlingException", "RequestLimitExceeded", "500", "502", "503", "504",
})


def _open_s3(s3: Any, url: str, bucket: str, key: str, size: int, version: str) -> ObjectReader:
    if not version:
        head = _s3_read(url, version, lambda: s3.head_object(Bucket=bucket, Key=key))
        size, version = int(head["ContentLength"]), head["ETag"]

    def fetch(start: int, length: int) -> bytes:
        def get() -> bytes:
            # If-Match: S3 refuses (412) to serve any other content than the
            # one listed, even while a new upload replaces it mid-read.
            response = s3.get_object(
                Bucket=bucket, Key=key, Range=f"bytes={start}-{start + length - 1}", IfMatch=version
            )
            return response["Body"].read()

        return _s3_read(url, version, get)

    return ObjectReader(url, size, fetch)


def _s3_read(url: str, version: str, call: Callable[[], Any]) -> Any:
    """Runs one read request; the store's errors become the sentences of InputVanished & co."""
    from botocore import exceptions as boto  # noqa: PLC0415

    bucket = "s3://" + url[len("s3://") :].split("/", 1)[0]
    try:
        return call()
    except boto.ClientError as err:
        code, message = _s3_error(err)
        if code in ("NoSuchKey", "404", "NotFound"):
            raise InputVanished(f"the object vanished since it was listed ({code})") from err
        if code in ("PreconditionFailed", "412", "InvalidRange", "416"):
            raise InputChanged(
                f"the object changed since it was listed (ETag {version} is no longer current)"
            ) from err
        if code in ("AccessDenied", "403", "AllAccessDisabled"):
            raise PermissionError(
                f"permission denied ({code}); the credentials in use need s3:GetObject on {bucket}"
            ) from err
        if code in _S3_TRANSIENT:
            raise ConnectionError(f"S3 failed: {code}: {message}") from err
        raise OSError(f"{code}: {message}") from err
    except (boto.ConnectionError, boto.HTTPClientError, boto.IncompleteReadError) as err:
        raise ConnectionError(f"cannot reach S3 ({err})") from err
    except boto.NoCredentialsError as err:
        raise PermissionError(f"no AWS credentials found: {_AWS_CREDENTIALS_HELP}") from err
    except boto.BotoCoreError as err:
        raise OSError(str(err)) from err
