"""The output lock's file: create-if-absent, compare-and-replace and compare-and-delete of one object.

pipeline/lock.py builds its lock on these three operations. On gs:// and
s3:// they are the stores' own conditional requests, so two runs cannot both
win; through Beam's other filesystems each condition is checked, then the
write made. Local disk needs none of this: the lock is an flock there.
"""

from typing import Any

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.stores import _gcs_call, _gcs_client, _s3_call, _s3_client, _split
from transforms import read_all


class ObjectLockFile:
    """Create-if-absent, compare-and-replace and compare-and-delete of one gs:// or s3:// object.

    `version` is a GCS generation or an S3 ETag; every write returns the new one.
    """

    def __init__(self, url: str, options: PipelineOptions | None) -> None:
        self.url = url
        scheme, self._bucket, self._key = _split(url)
        self._gcs = scheme == "gs"
        options = options or PipelineOptions()
        self._client = _gcs_client(options) if self._gcs else _s3_client(options)

    def read(self) -> tuple[bytes, Any] | None:
        if self._gcs:
            from google.api_core import exceptions as api  # noqa: PLC0415

            def gcs_read() -> tuple[bytes, Any] | None:
                blob = self._client.bucket(self._bucket).get_blob(self._key)
                if blob is None:
                    return None
                generation = blob.generation  # (a download resets it from headers some servers omit)
                try:
                    return blob.download_as_bytes(if_generation_match=generation), generation
                except (api.NotFound, api.PreconditionFailed):
                    return gcs_read()  # replaced or removed between the two requests: look again

            return _gcs_call(self._client, self.url, "read", gcs_read)
        from botocore import exceptions as boto  # noqa: PLC0415

        def s3_read() -> tuple[bytes, Any] | None:
            try:
                got = self._client.get_object(Bucket=self._bucket, Key=self._key)
            except boto.ClientError as err:
                if _s3_code(err) in ("NoSuchKey", "404"):
                    return None
                raise
            return got["Body"].read(), got["ETag"]

        return _s3_call(self.url, "read", s3_read)

    def write(self, data: bytes, version: Any | None) -> Any | None:
        """Writes if the object is absent (version None) or still at `version`; None if not."""
        if self._gcs:
            from google.api_core import exceptions as api  # noqa: PLC0415

            def gcs_write() -> Any | None:
                blob = self._client.bucket(self._bucket).blob(self._key)
                try:
                    blob.upload_from_string(
                        data, content_type="application/json", if_generation_match=version or 0
                    )
                except api.PreconditionFailed:  # (a NotFound here is a missing bucket)
                    return None
                return blob.generation

            return _gcs_call(self._client, self.url, "write", gcs_write)
        from botocore import exceptions as boto  # noqa: PLC0415

        condition = {"IfNoneMatch": "*"} if version is None else {"IfMatch": version}

        def s3_write() -> Any | None:
            try:
                put = self._client.put_object(Bucket=self._bucket, Key=self._key, Body=data, **condition)
            except boto.ClientError as err:
                if _s3_code(err) in _S3_CONDITION_FAILED:
                    return None
                raise
            return put["ETag"]

        return _s3_call(self.url, "write", s3_write)

    def delete(self, version: Any) -> bool:
        """Deletes the object if it is still at `version`; False if not."""
        if self._gcs:
            from google.api_core import exceptions as api  # noqa: PLC0415

            def gcs_delete() -> bool:
                try:
                    self._client.bucket(self._bucket).blob(self._key).delete(if_generation_match=version)
                except (api.PreconditionFailed, api.NotFound):
                    return False
                return True

            return _gcs_call(self._client, self.url, "delete", gcs_delete)
        from botocore import exceptions as boto  # noqa: PLC0415

        def s3_delete() -> bool:
            try:
                self._client.delete_object(Bucket=self._bucket, Key=self._key, IfMatch=version)
            except boto.ClientError as err:
                if _s3_code(err) in _S3_CONDITION_FAILED:
                    return False
                raise
            return True

        return _s3_call(self.url, "delete", s3_delete)


class BeamLockFile:
    """The same operations through Beam's filesystems, for other schemes (hdfs://, …).

    Beam offers no conditional write: each condition is checked, then the
    write made, so two runs starting within the same instant are not kept
    apart there. The version is the content itself.
    """

    def __init__(self, url: str) -> None:
        self.url = url

    def read(self) -> tuple[bytes, Any] | None:
        if not FileSystems.exists(self.url):
            return None
        with FileSystems.open(self.url, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            data = read_all(handle)
        return data, data

    def write(self, data: bytes, version: Any | None) -> Any | None:
        found = self.read()
        if (found[1] if found is not None else None) != version:
            return None
        with FileSystems.create(self.url, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            handle.write(data)
        return data

    def delete(self, version: Any) -> bool:
        found = self.read()
        if found is None or found[1] != version:
            return False
        FileSystems.delete([self.url])
        return True


# What S3 answers when a condition fails: 412, or 409 when a concurrent
# conditional write won; a missing object for If-Match.
_S3_CONDITION_FAILED = ("PreconditionFailed", "412", "ConditionalRequestConflict", "409", "NoSuchKey", "404")


def _s3_code(err: Any) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


LockFile = ObjectLockFile | BeamLockFile


def lock_file(url: str, options: PipelineOptions | None) -> LockFile:
    """The operations on the lock file at `url`: the store's own on gs:// and s3://, Beam's elsewhere."""
    scheme = FileSystems.get_scheme(url)
    return ObjectLockFile(url, options) if scheme in ("gs", "s3") else BeamLockFile(url)
