"""Privacy options at launch: the hash key read once, the deletion list's files listed."""


import logging
from typing import NamedTuple

from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.inputs import InputError, select_inputs
from pipeline.options import PrepOptions, UsageError
from pipeline.stores import ObjectOpener
from transforms import read_all
from transforms.privacy import HashKey, PrivacyConfig
from transforms.read import InputFile, ObjectHandle, is_object_store, read_error_message

_LOG = logging.getLogger(__name__)
# Below this, a key's hashes can be reversed by trying every key, whatever the data.
SHORT_KEY_BYTES = 16


class PrivacyPlan(NamedTuple):
    """What the privacy options make of a run.

    `config` is None when records and examples are written as without
    privacy; `deletion_list` holds the --exclude-users files (empty without
    it); `list_key` is the key the list's ids are hashed with (when the run
    hashes distinct_ids).
    """

    config: PrivacyConfig | None
    deletion_list: list[InputFile]
    list_key: HashKey | None


def plan_privacy(options: PipelineOptions) -> PrivacyPlan:
    """Reads the hash key and lists the deletion list, before any work.

    Args:
      options: the run's options, checked by check_options (names split and
        allowed), with Beam's filesystems configured from them.

    Raises:
      UsageError: the key file cannot be read, or holds no key.
      InputError: the deletion list matches no file or cannot be listed.
    """
    own = options.view_as(PrepOptions)
    key = read_hash_key(own.hash_key_file, options) if own.hash_key_file else None
    config = None
    if own.drop_property or own.hash_property or own.redact_examples:
        config = PrivacyConfig(tuple(own.drop_property), tuple(own.hash_property), key, own.redact_examples)
    if not own.exclude_users:
        return PrivacyPlan(config, [], None)
    try:
        files = select_inputs([own.exclude_users], None, "name", options).files
    except InputError as err:
        raise InputError(f"--exclude-users: {err}") from None
    list_key = key if config is not None and config.hashes_ids else None
    return PrivacyPlan(config, files, list_key)


def read_hash_key(path: str, options: PipelineOptions) -> HashKey:
    """The key of --hash-key-file: its bytes, less one trailing newline (\\n or \\r\\n).

    Read once, here, at launch (local, gs:// or s3://, listed and read as
    the input is); it reaches the workers inside the pickled stages. No
    message names a byte of it.

    Raises:
      UsageError: the file cannot be found or read, or holds nothing but a newline.
    """
    try:
        files = select_inputs([path], None, "name", options).files
    except InputError as err:
        raise UsageError(f"--hash-key-file: {err}") from None
    if len(files) != 1:
        raise UsageError(f"--hash-key-file {path!r} matches {len(files)} files; it must name one")
    (found,) = files
    try:
        if is_object_store(found.path):
            handle: ObjectHandle = ObjectOpener(options).open(found.path, found.size, found.version)
        else:
            handle = open(found.path, "rb")  # noqa: SIM115 (closed below)
        with handle:
            secret = read_all(handle)
    except OSError as err:  # the stores' refusals and failures are OSErrors (pipeline/stores.py)
        raise UsageError(f"--hash-key-file {path!r} cannot be read: {read_error_message(err)}") from None
    if secret.endswith(b"\n"):
        secret = secret[:-2] if secret.endswith(b"\r\n") else secret[:-1]
    if not secret:
        raise UsageError(f"--hash-key-file {path!r} holds no key: it is empty (but for a newline)")
    if len(secret) < SHORT_KEY_BYTES:
        _LOG.warning(
            "the key in --hash-key-file is %d bytes: with fewer than %d random bytes, hashes can be "
            "reversed by trying keys; 32 random bytes are recommended",
            len(secret), SHORT_KEY_BYTES,
        )
    return HashKey(secret)
