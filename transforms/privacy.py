"""Privacy before import (DESIGN.md §7): properties dropped or hashed, listed users found (pure; no Beam).

Drop and hash are applied by `Scrubber` to every accepted record, right after
the rules accepted it (records.classify_batch), so that the written line, the
generated $insert_id and the keys that place and deduplicate the record are
all computed on what is written. The deletion list (--exclude-users) is
joined with the records by the ExcludeUsers stage (transforms/exclude.py);
the digests, buckets and filters it needs are here.
"""

import dataclasses
import hashlib
import hmac
import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import orjson

from transforms.batches import RecordBatch, select
from transforms.jsontext import serialise
from transforms.layout import EVENTS_PREFIX
from transforms.limits import MAX_RECORD_BYTES
from transforms.reasons import INSERT_ID_GENERATED, Fate, Kind, Reason
from transforms.rules import RuleConfig, classify, event_key, generated_insert_id
from transforms.updates import identity_key

# Tally names; pipeline/summary.py turns them into the summary's "privacy" section.
DROPPED_PREFIX = "privacy_dropped_"
HASHED_PREFIX = "privacy_hashed_"
EXCLUDED_EVENTS = "excluded_events"
EXCLUDED_PROFILES = "excluded_profiles"
LISTED_IDS = "excluded_listed_ids"

DISTINCT_ID = "distinct_id"
_PROFILE_ID = "$distinct_id"
# Operations whose value must stay a non-empty object (updates._operation_problem).
_OBJECT_OPERATIONS = frozenset(("$set", "$set_once", "$add", "$union", "$append", "$remove"))

# Names neither flag takes, and why: what they name is not a property, or
# every record needs it as it is.
_REFUSED = {
    "time": "every event needs its time",
    "$insert_id": "it is the key Mixpanel deduplicates events by (a hash would also be 64 "
    "characters, over its 36-byte limit)",
    "event": "the event name is not a property",
    "properties": "it is the event's properties object, not a property",
    "$group_key": "every group update needs its $group_key and $group_id as they are",
    "$group_id": "every group update needs its $group_key and $group_id as they are",
}
# Names --drop-property does not take: an event may have no other identity.
_NOT_DROPPED = {
    DISTINCT_ID: "it identifies the event's user",
    "$device_id": "an event without distinct_id is identified by its $device_id or $user_id",
    "$user_id": "an event without distinct_id is identified by its $device_id or $user_id",
}

# The deletion list is joined in buckets of the id digests: enough of them
# that no bucket holds more than about this much of the list, or of the data
# (whose probes a bucket gathers), and no more than MAX_BUCKETS.
LIST_BYTES_PER_BUCKET = 16 << 20
DATA_BYTES_PER_BUCKET = 256 << 20
MAX_BUCKETS = 4096
ID_DIGEST_BYTES = 16
_LIST_SPACE = b" \t\r"  # DESIGN.md's blank: what surrounds an id on a list line
_MISSING = object()


def name_problem(flag: str, name: str) -> str:
    """Why `flag NAME` (--drop-property or --hash-property) is refused, or "" when it is fine."""
    if not name:
        return f"{flag} needs a property name, got an empty one"
    why = _REFUSED.get(name)
    if why is None and flag == "--drop-property":
        why = _NOT_DROPPED.get(name)
        if why is not None:
            why += f"; --hash-property {name} pseudonymises it instead"
    if why is None and name == _PROFILE_ID:
        why = (
            "every profile update needs its $distinct_id; --hash-property distinct_id "
            "hashes it, together with the events' distinct_id"
        )
    return f"{flag} {name} is refused: {why}" if why else ""


class HashKey:
    """The secret of --hash-key-file, for HMAC-SHA256. Never shown: its repr names no byte of it.

    It travels to the workers inside the pickled stages (Beam pickles what a
    DoFn holds), never in the options, logs or summaries.
    """

    __slots__ = ("_secret", "_keyed")

    def __init__(self, secret: bytes) -> None:
        if type(secret) is not bytes or not secret:
            raise ValueError("the hash key must be non-empty bytes")
        self._secret = secret
        # The HMAC state after the key, copied for each message (a third faster than
        # hmac.digest, which keys afresh every time); made on first use, since the
        # workers get this object pickled and hashlib states do not pickle.
        self._keyed: hmac.HMAC | None = None

    def __repr__(self) -> str:
        return "HashKey(<redacted>)"

    __str__ = __repr__

    def __reduce__(self) -> tuple[Any, ...]:
        return HashKey, (self._secret,)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HashKey) and hmac.compare_digest(self._secret, other._secret)

    def __hash__(self) -> int:
        return hash((HashKey, hashlib.sha256(self._secret).digest()))

    def hex_digest(self, message: bytes) -> str:
        """Lowercase hex of HMAC-SHA256(key, message): 64 characters."""
        if self._keyed is None:
            self._keyed = hmac.new(self._secret, digestmod=hashlib.sha256)
        keyed = self._keyed.copy()
        keyed.update(message)
        return keyed.hexdigest()


def hash_value(value: object, key: HashKey) -> str:
    """The pseudonym of a value: HMAC-SHA256 of its string form, in lowercase hex.

    The string form of a string is its UTF-8 bytes; of any other value its
    compact JSON as this tool writes JSON (no spaces, non-ASCII characters
    as UTF-8, object keys sorted so that equal objects give equal hashes):
    42 is hashed as b"42", like the string "42"; true as b"true"; null as
    b"null"; [1, "a"] as b'[1,"a"]'.
    """
    if type(value) is str:
        return key.hex_digest(value.encode("utf-8"))
    return key.hex_digest(serialise(value, orjson.OPT_SORT_KEYS))


def drop_keys(value: object, names: frozenset[str], found: set[str]) -> None:
    """Removes every key in `names` from the objects in `value`, at any depth, lists included.

    Works in place, without recursion (lists may nest 1,024 levels); adds the
    names removed to `found`.
    """
    stack = [value]
    while stack:
        node = stack.pop()
        if type(node) is dict:
            for name in names:
                if name in node:
                    del node[name]
                    found.add(name)
            children: Iterable[Any] = node.values()
        elif type(node) is list:
            children = node
        else:
            continue
        stack.extend(child for child in children if type(child) is dict or type(child) is list)


@dataclasses.dataclass(frozen=True)
class PrivacyConfig:
    """The run's privacy settings (DESIGN.md §7).

    Attributes:
      drop: property names removed at any depth from event properties and
        from profile and group operation values.
      hash: property names whose values become hash_value(); "distinct_id"
        also hashes profile updates' $distinct_id.
      key: the HMAC key; required with `hash`.
      redact_examples: examples in the summary and report show where a line
        is, never what it holds.
    """

    drop: tuple[str, ...] = ()
    hash: tuple[str, ...] = ()
    key: HashKey | None = dataclasses.field(default=None, repr=False)
    redact_examples: bool = False

    def __post_init__(self) -> None:
        for flag, names in (("--drop-property", self.drop), ("--hash-property", self.hash)):
            for name in names:
                problem = name_problem(flag, name) if type(name) is str else f"{flag} takes strings"
                if problem:
                    raise ValueError(problem)
        both = sorted(set(self.drop) & set(self.hash))
        if both:
            raise ValueError(f"{both[0]!r} is given to both --drop-property and --hash-property")
        if self.hash and self.key is None:
            raise ValueError("--hash-property needs the key of --hash-key-file")

    @property
    def rewrites(self) -> bool:
        """Whether records are changed at all (drop or hash)."""
        return bool(self.drop or self.hash)

    @property
    def hashes_ids(self) -> bool:
        """Whether distinct_ids (and profiles' $distinct_id) are written hashed."""
        return DISTINCT_ID in self.hash

    def classifier(self, config: RuleConfig, tallies: Counter[str]) -> Callable[[bytes, RuleConfig], Fate]:
        """rules.classify, followed by drop and hash when there are any; counts into `tallies`."""
        if not self.rewrites:
            return classify
        return Scrubber(self, config, tallies).classify


class Scrubber:
    """Drops and hashes the properties of accepted records, counting per name.

    A record that holds none of the names is passed on untouched (a byte
    search spares it the parse). A changed record gets its $insert_id
    generated again, if it was generated, and its keys computed again, on
    what is written. Two things turn an accepted record into a reject:
    hashing that makes it 1,000,000 bytes or more (record_too_large), and a
    profile or group operation that it leaves invalid (invalid_operation):
    a $set, $set_once, $append, $remove or $union emptied by dropping, or
    an $add of a hashed property (a hash is not a number).
    """

    def __init__(self, privacy: PrivacyConfig, config: RuleConfig, tallies: Counter[str]) -> None:
        self._drop = frozenset(privacy.drop)
        self._hash = privacy.hash
        self._key = privacy.key
        self._hash_ids = privacy.hashes_ids
        self._time_unit = config.time_unit
        self._tallies = tallies
        # How each name's key appears in a written line: compact JSON, as orjson writes it.
        self._drop_needles = tuple(orjson.dumps(name) + b":" for name in privacy.drop)
        hash_needles = [orjson.dumps(name) + b":" for name in privacy.hash]
        if self._hash_ids:
            hash_needles.append(orjson.dumps(_PROFILE_ID) + b":")
        self._hash_needles = tuple(hash_needles)

    def classify(self, line: bytes, config: RuleConfig) -> Fate:
        """rules.classify(line, config), with the record as privacy writes it."""
        return self.scrub(classify(line, config))

    def scrub(self, fate: Fate) -> Fate:
        """The Fate of an accepted record once dropped and hashed; blanks and rejects as they are."""
        kind = fate.kind
        if kind in (Kind.REJECT, Kind.BLANK):
            return fate
        line = fate.line
        # find() rather than `in`: bytes.__contains__ first tries the needle as an int.
        drops = any(line.find(needle) >= 0 for needle in self._drop_needles)
        if not drops and not any(line.find(needle) >= 0 for needle in self._hash_needles):
            return fate
        record = orjson.loads(line)
        dropped: set[str] = set()
        hashed: set[str] = set()
        if kind == Kind.EVENT:
            scrubbed = self._event(fate, record, drops, dropped, hashed)
        else:
            scrubbed = self._update(fate, record, drops, dropped, hashed)
        if scrubbed.kind != Kind.REJECT:
            for name in dropped:
                self._tallies[DROPPED_PREFIX + name] += 1
            for name in hashed:
                self._tallies[HASHED_PREFIX + name] += 1
        return scrubbed

    def _event(
        self, fate: Fate, record: dict[str, Any], drops: bool, dropped: set[str], hashed: set[str]
    ) -> Fate:
        properties = record["properties"]
        generated = fate.normalised & INSERT_ID_GENERATED
        if generated:
            del properties["$insert_id"]  # made from the record before privacy: made again below
        if drops:
            drop_keys(properties, self._drop, dropped)
        for name in self._hash:
            value = properties.get(name, _MISSING)
            # An empty distinct_id ties the event to no user: hashed, it would tie it to one.
            if value is _MISSING or (name == DISTINCT_ID and value == ""):
                continue
            properties[name] = hash_value(value, self._key)  # type: ignore[arg-type]
            hashed.add(name)
        if not dropped and not hashed:
            return fate  # a hashed name was only found deeper than the top level
        distinct_id = properties.get(DISTINCT_ID, "")
        if generated:
            time = properties["time"]
            seconds = time if self._time_unit == "s" else time // 1000
            properties["$insert_id"] = generated_insert_id(
                fate.name, distinct_id, seconds, properties, self._time_unit
            )
        out = serialise(record)
        if len(out) > MAX_RECORD_BYTES:
            return _too_large(len(out))
        key = event_key(fate.name, distinct_id, properties["$insert_id"], fate.day)
        return Fate(Kind.EVENT, _exact(out), fate.day, key, fate.name, fate.normalised, values=properties)

    def _update(
        self, fate: Fate, record: dict[str, Any], drops: bool, dropped: set[str], hashed: set[str]
    ) -> Fate:
        operation = fate.name
        value = record[operation]
        if drops:
            drop_keys(value, self._drop, dropped)
        key = fate.key
        if self._hash_ids and fate.kind == Kind.PROFILE:
            record[_PROFILE_ID] = hash_value(record[_PROFILE_ID], self._key)  # type: ignore[arg-type]
            key = identity_key([record[_PROFILE_ID]])
            hashed.add(DISTINCT_ID)
        if type(value) is dict:
            for name in self._hash:
                if name not in value:
                    continue
                if operation == "$add":
                    return _invalid_operation(
                        f"$add adds to {_quoted(name)}, which --hash-property hashes, "
                        "and a hash is not a number"
                    )
                if operation == "$union":  # each element, so that it stays a list
                    value[name] = [hash_value(item, self._key) for item in value[name]]  # type: ignore[arg-type]
                else:
                    value[name] = hash_value(value[name], self._key)  # type: ignore[arg-type]
                hashed.add(name)
            if not value and operation in _OBJECT_OPERATIONS:
                return _invalid_operation(
                    f"{operation} is empty once --drop-property removed "
                    + ", ".join(_quoted(name) for name in sorted(dropped))
                )
        if not dropped and not hashed:
            return fate
        out = serialise(record)
        if len(out) > MAX_RECORD_BYTES:
            return _too_large(len(out))
        return Fate(fate.kind, _exact(out), "", key, operation, fate.normalised, values=value)


def _exact(out: bytes) -> bytes:
    # orjson's result keeps a 4+ KiB allocation, and a written line is held by
    # its batch: joining it with b"" makes an exact-size copy (as rules.classify).
    return b"".join((out, b""))


def _quoted(name: str) -> str:
    return orjson.dumps(name[:40]).decode()


def _too_large(size: int) -> Fate:
    return Fate(
        Kind.REJECT,
        reason=Reason.RECORD_TOO_LARGE,
        detail=f"the record is {size} bytes once --hash-property hashed its values; "
        f"it must be under {MAX_RECORD_BYTES + 1}",
    )


def _invalid_operation(detail: str) -> Fate:
    return Fate(Kind.REJECT, reason=Reason.INVALID_OPERATION, detail=detail)


def summary_section(drop: Sequence[str], hashed: Sequence[str], tallies: Mapping[str, int]) -> dict[str, Any]:
    """The summary's "privacy" section; every key is there, with zeros, whatever the options.

    `dropped` and `hashed` count, per name given, the accepted lines in
    which it was removed or hashed; `excluded` the events and profile
    updates of listed users; `listed_ids` the distinct ids of the list.
    """
    return {
        "dropped": {name: tallies.get(DROPPED_PREFIX + name, 0) for name in sorted(set(drop))},
        "hashed": {name: tallies.get(HASHED_PREFIX + name, 0) for name in sorted(set(hashed))},
        "excluded": {
            "events": tallies.get(EXCLUDED_EVENTS, 0),
            "profiles": tallies.get(EXCLUDED_PROFILES, 0),
        },
        "listed_ids": tallies.get(LISTED_IDS, 0),
    }


def excluded(tallies: Mapping[str, int]) -> tuple[int, int]:
    """(events, profile updates) removed by --exclude-users."""
    return tallies.get(EXCLUDED_EVENTS, 0), tallies.get(EXCLUDED_PROFILES, 0)


# --- the deletion list (--exclude-users) ------------------------------------------------------


def exclusion_buckets(list_bytes: int, data_bytes: int) -> int:
    """How many buckets the deletion list and the records are joined in.

    Grows with the list (each bucket's ids are held as a set) and with the
    data (each bucket gathers its records' probes), up to MAX_BUCKETS. The
    output does not depend on it: only how the work is spread does.
    """
    wanted = max(math.ceil(list_bytes / LIST_BYTES_PER_BUCKET), math.ceil(data_bytes / DATA_BYTES_PER_BUCKET))
    return min(max(wanted, 1), MAX_BUCKETS)


def id_digest(identity: bytes) -> bytes:
    """The 16-byte digest the join compares ids by."""
    return hashlib.blake2b(identity, digest_size=ID_DIGEST_BYTES).digest()


def bucket_of(digest: bytes, buckets: int) -> int:
    """The bucket of an id digest: its first 8 bytes, big-endian, modulo `buckets`."""
    return int.from_bytes(digest[:8], "big") % buckets


def listed_id(line: bytes, key: HashKey | None = None) -> bytes | None:
    """The id a deletion-list line names, as the records hold it; None for a blank line.

    Spaces, tabs and a carriage return around the id are not part of it
    (the reader already took the line ending off). With `key` (the run
    hashes distinct_ids), the id is hashed as the records' ids are.
    """
    identity = line.strip(_LIST_SPACE)
    if not identity:
        return None
    if key is not None:
        return key.hex_digest(identity).encode("ascii")
    return identity


def listed_digests(lines: Iterable[bytes], key: HashKey | None, buckets: int) -> dict[int, bytes]:
    """The digests of a batch of deletion-list lines, by bucket, back to back."""
    parts: dict[int, list[bytes]] = {}
    for line in lines:
        identity = listed_id(line, key)
        if identity is not None:
            digest = id_digest(identity)
            parts.setdefault(bucket_of(digest, buckets), []).append(digest)
    return {bucket: b"".join(digests) for bucket, digests in parts.items()}


def split_digests(digests: bytes) -> list[bytes]:
    """Digests written back to back, one by one."""
    return [digests[i : i + ID_DIGEST_BYTES] for i in range(0, len(digests), ID_DIGEST_BYTES)]


# (record positions in the batch, their id digests back to back)
Probe = tuple[list[int], bytes]


def probes(route: str, batch: RecordBatch, buckets: int) -> dict[int, Probe]:
    """The user ids of a batch's records, by bucket, to be looked up in the deletion list.

    An event's user is its distinct_id as written (records without one, or
    with an empty one, have no user and are never excluded); a profile
    update's is its $distinct_id. Group updates have no user.
    """
    events = route.startswith(EVENTS_PREFIX)
    found: dict[int, tuple[list[int], list[bytes]]] = {}
    for position, line in enumerate(batch[3]):
        record = orjson.loads(line)
        identity = record["properties"].get(DISTINCT_ID) if events else record.get(_PROFILE_ID)
        if type(identity) is not str or not identity:
            continue
        digest = id_digest(identity.encode("utf-8"))
        positions, digests = found.setdefault(bucket_of(digest, buckets), ([], []))
        positions.append(position)
        digests.append(digest)
    return {bucket: (positions, b"".join(digests)) for bucket, (positions, digests) in found.items()}


def listed_positions(listed: set[bytes], probe: Probe) -> list[int]:
    """The positions of a probe whose id is in the deletion list's `listed` digests."""
    positions, digests = probe
    return [p for p, d in zip(positions, split_digests(digests), strict=True) if d in listed]


def without(batch: RecordBatch, positions: set[int]) -> RecordBatch | None:
    """The batch less the records at `positions`, in the same order; None when none is left."""
    kept = [i for i in range(len(batch[3])) if i not in positions]
    return select(batch, kept) if kept else None
