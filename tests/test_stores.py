"""Tests of pipeline/stores.py's reading: ranged reads of one version, and the stores' errors in words.

No store is contacted here: the readers get a fake `fetch`, the error
translation gets the exceptions the clients raise. tests/test_object_storage.py
runs the same code against the emulators.
"""

import pytest
import requests
from botocore import exceptions as boto
from google.api_core import exceptions as api
from google.auth import exceptions as auth

from pipeline.stores import ObjectReader, _gcs_read, _s3_read
from transforms.read import READ_ERRORS, TRANSIENT_ERRORS, InputChanged, InputVanished

DATA = bytes(range(256)) * 40  # 10,240 bytes


class FakeStore:
    """fetch(start, length) over DATA, recording each request."""

    def __init__(self, data: bytes = DATA, short_by: int = 0) -> None:
        self.data = data
        self.short_by = short_by
        self.requests: list[tuple[int, int]] = []

    def fetch(self, start: int, length: int) -> bytes:
        self.requests.append((start, length))
        return self.data[start : start + length - self.short_by]


def test_each_read_is_one_request_of_the_size_asked_and_seeks_cost_nothing():
    store = FakeStore()
    reader = ObjectReader("gs://b/k", len(DATA), store.fetch)
    assert reader.read(4096) == DATA[:4096]
    assert reader.seek(9000) == 9000 and reader.tell() == 9000
    assert reader.read(4096) == DATA[9000:]  # what is left, not more
    assert reader.read(4096) == b""  # at the end: no request
    reader.seek(-10, 2)
    assert reader.read() == DATA[-10:]
    reader.seek(0)
    buffer = bytearray(7)
    assert reader.readinto(buffer) == 7 and bytes(buffer) == DATA[:7]
    assert store.requests == [(0, 4096), (9000, 1240), (10230, 10), (0, 7)]
    assert reader.seekable() and reader.readable() and not reader.writable()


def test_an_empty_object_is_read_without_a_request():
    store = FakeStore(b"")
    assert ObjectReader("s3://b/k", 0, store.fetch).read(100) == b""
    assert store.requests == []


def test_a_response_shorter_than_the_listed_size_means_the_object_changed():
    reader = ObjectReader("gs://b/k", len(DATA), FakeStore(short_by=1).fetch)
    with pytest.raises(
        InputChanged, match=r"^the object changed since it was listed \(it ends before the 10240 bytes listed\)$"
    ):
        reader.read(100)


def test_a_closed_reader_refuses_to_read():
    reader = ObjectReader("gs://b/k", len(DATA), FakeStore().fetch)
    with reader:
        pass
    with pytest.raises(ValueError, match="closed"):
        reader.read(1)


def _raise(err: BaseException):
    def call():
        raise err

    return call


def _translated(read, url, err):
    with pytest.raises(READ_ERRORS) as raised:
        read(url, "1234", _raise(err))
    assert raised.value.__cause__ is err
    return raised.value


GCS = "gs://bkt/in/a.ndjson"


@pytest.mark.parametrize(
    "err, kind, message",
    [
        (api.NotFound("No such object"), InputVanished, "the object vanished since it was listed (404 Not Found)"),
        (api.PreconditionFailed("x"), InputChanged,
         "the object changed since it was listed (generation 1234 is no longer current)"),
        (api.RequestRangeNotSatisfiable("x"), InputChanged,
         "the object changed since it was listed (generation 1234 is no longer current)"),
        (api.Forbidden("x"), PermissionError,
         "permission denied (403 Forbidden); the account needs storage.objects.get on gs://bkt"),
        (api.Unauthorized("x"), PermissionError,
         "permission denied (401 Unauthorized); the account needs storage.objects.get on gs://bkt"),
        (api.BadRequest("bad"), OSError, "400 Bad Request: bad"),
        (api.ServiceUnavailable("x"), ConnectionError, "Google Cloud Storage failed: 503 Service Unavailable"),
        (api.InternalServerError("x"), ConnectionError, "Google Cloud Storage failed: 500 Internal Server Error"),
        (api.TooManyRequests("x"), ConnectionError, "Google Cloud Storage failed: 429 Too Many Requests"),
        (api.RetryError("Timeout of 120.0s exceeded", None), TimeoutError,
         "Google Cloud Storage did not answer in time (Timeout of 120.0s exceeded, last exception: None)"),
        (requests.exceptions.ConnectionError("refused"), ConnectionError,
         "cannot reach Google Cloud Storage (refused)"),
        (requests.exceptions.ReadTimeout("slow"), ConnectionError, "cannot reach Google Cloud Storage (slow)"),
        (requests.exceptions.ChunkedEncodingError("cut"), ConnectionError, "cannot reach Google Cloud Storage (cut)"),
        (auth.TransportError("dns"), ConnectionError, "cannot reach Google Cloud Storage (dns)"),
        (auth.RefreshError("expired", retryable=True), ConnectionError,
         "Google Cloud credentials could not be refreshed (expired)"),
        (auth.RefreshError("revoked"), PermissionError, "Google Cloud credentials are unusable (revoked)"),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else None,
)
def test_gcs_read_errors_in_words(err, kind, message):
    translated = _translated(_gcs_read, GCS, err)
    assert type(translated) is kind and str(translated) == message
    # What may pass is retried (never skipped); what will not pass is the user's to fix.
    assert isinstance(translated, TRANSIENT_ERRORS) == (kind in (ConnectionError, TimeoutError))


def _client_error(code: str, message: str = "msg") -> boto.ClientError:
    return boto.ClientError({"Error": {"Code": code, "Message": message}}, "GetObject")


S3 = "s3://bkt/in/a.ndjson"


@pytest.mark.parametrize(
    "err, kind, message",
    [
        (_client_error("NoSuchKey"), InputVanished, "the object vanished since it was listed (NoSuchKey)"),
        (_client_error("404"), InputVanished, "the object vanished since it was listed (404)"),
        (_client_error("PreconditionFailed"), InputChanged,
         "the object changed since it was listed (ETag 1234 is no longer current)"),
        (_client_error("InvalidRange"), InputChanged,
         "the object changed since it was listed (ETag 1234 is no longer current)"),
        (_client_error("AccessDenied"), PermissionError,
         "permission denied (AccessDenied); the credentials in use need s3:GetObject on s3://bkt"),
        (_client_error("SlowDown", "Reduce your request rate"), ConnectionError,
         "S3 failed: SlowDown: Reduce your request rate"),
        (_client_error("InternalError"), ConnectionError, "S3 failed: InternalError: msg"),
        (_client_error("503"), ConnectionError, "S3 failed: 503: msg"),
        (_client_error("InvalidObjectState", "archived"), OSError, "InvalidObjectState: archived"),
        (boto.EndpointConnectionError(endpoint_url="https://s3"), ConnectionError,
         'cannot reach S3 (Could not connect to the endpoint URL: "https://s3")'),
        (boto.ReadTimeoutError(endpoint_url="https://s3"), ConnectionError,
         'cannot reach S3 (Read timeout on endpoint URL: "https://s3")'),
        (boto.ResponseStreamingError(error="reset"), ConnectionError,
         "cannot reach S3 (An error occurred while reading from response stream: reset)"),
        (boto.IncompleteReadError(actual_bytes=1, expected_bytes=2), ConnectionError,
         "cannot reach S3 (1 read, but total bytes expected is 2.)"),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else None,
)
def test_s3_read_errors_in_words(err, kind, message):
    translated = _translated(_s3_read, S3, err)
    assert type(translated) is kind and str(translated) == message
    assert isinstance(translated, TRANSIENT_ERRORS) == (kind is ConnectionError)


def test_s3_without_credentials_is_the_users_to_fix_not_transient():
    translated = _translated(_s3_read, S3, boto.NoCredentialsError())
    assert type(translated) is PermissionError and str(translated).startswith("no AWS credentials found: set ")
    assert not isinstance(translated, TRANSIENT_ERRORS)
