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
"""


import re
import uuid
from typing import Any, NamedTuple

from apache_beam.io.filesystem import FileSystem
from apache_beam.options.pipeline_options import PipelineOptions

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
    """One object: its URL, size in bytes and upload time (UNIX seconds, UTC)."""

    path: str
    size: int
    upload_time: float


def is_object_store(url: str) -> bool:
    """Whether `url` is a gs:// or s3:// URL."""
    return _URL.fullmatch(url) is not None


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
                bucket, prefix=prefix, fields="items(name,size,timeCreated),nextPageToken"
            )
            return [
                StoredObject(f"gs://{bucket}/{b.name}", int(b.size), b.time_created.timestamp())
                for b in blobs
            ]

        return _gcs_call(client, url, "list", gcs_listing)  # type: ignore[no-any-return]
    s3 = _s3_client(options)

    def s3_listing() -> list[StoredObject]:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [
            StoredObject(f"s3://{bucket}/{o['Key']}", int(o["Size"]), o["LastModified"].timestamp())
            for page in pages
            for o in page.get("Contents", ())
        ]

    return _s3_call(url, "list", s3_listing)  # type: ignore[no-any-return]


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


# --- Amazon S3 ------------------------------------------------------------------------------


def _s3_client(options: PipelineOptions) -> Any:
    # The boto3 client Beam's own S3 filesystem builds from the --s3_* options
    # (or, without them, from the AWS default credential chain).
    from apache_beam.io.aws.clients.s3 import boto3_client  # noqa: PLC0415 (needs the aws extra)

    return boto3_client.Client(options=options).client


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
        error = err.response.get("Error", {})
        code = str(error.get("Code", ""))
        message = error.get("Message") or str(err)
        if code in ("NoSuchBucket", "404") and action != "delete":
            raise StoreError(f"bucket {bucket} does not exist") from err
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"):
            raise StoreError(f"AWS refused the credentials in use ({code}: {message}): {_AWS_CREDENTIALS_HELP}") from err
        if code in ("AccessDenied", "403", "AllAccessDisabled"):
            raise StoreError(
                f"permission denied to {action} {url} ({code}); the credentials in use need "
                f"{_S3_PERMISSION[action]} on {bucket}"
            ) from err
        raise StoreError(f"cannot {action} {url}: {code}: {message}") from err
    except boto.BotoCoreError as err:  # endpoint unreachable, bad region, …
        raise StoreError(f"cannot {action} {url}: {err}") from err


_S3_PERMISSION = {"list": "s3:ListBucket", "read": "s3:GetObject", "write": "s3:PutObject", "delete": "s3:DeleteObject"}
