"""The benchmark corpus's lines: a realistic mix of records, one line at a time.

The mix, per line: about 83 % fresh events with 8 to 20 properties (12 % of
them with a list or an object), 10 % re-sent events (exact copies, or the same
overwrite key with a property added), 3 % user profile updates, 1 % group
updates, 2.5 % rejects of many kinds and a few blank lines. About 1 % of fresh
events and of profile $set updates give a key twice (an earlier, stale value;
the last one wins); those draws come from a second Random, so every other line
is the same as without them. Event times lie in the 30 days before the
reference time.

Speed matters: values are serialised once into pools of `"key":value`
fragments, lines are joined from them, and the hot path draws with
`random()` (a C call) rather than `choice()` and `sample()` (Python code).
"""

import datetime
import random
from collections.abc import Callable
from typing import Any

import orjson

_DAYS = 30  # event times lie in this many days before the reference time
_RESEND_WINDOW = 20_000  # re-sends copy one of this many latest events
# Events with a list or an object among their properties (the rules walk those).
_NESTED_KEYS = ("tags", "cart", "context")
_NESTED_SHARE = 0.12
_KEY_ORDERS = 4096  # precomputed shuffles of the property keys
_DUPLICATE_KEY_SHARE = 0.01  # of fresh events and of profile $set updates

# Shares of lines, cumulative thresholds on random(): the rest are fresh events.
_BLANK = 0.002
_REJECT = _BLANK + 0.025
_GROUP = _REJECT + 0.01
_PROFILE = _GROUP + 0.03
_RESEND = _PROFILE + 0.10

_EVENT_NAMES = (
    "Page View", "Page View", "Page View", "Page View", "Screen View", "Screen View",
    "Button Click", "Button Click", "Search", "Add To Cart", "Remove From Cart",
    "Checkout Started", "Purchase", "Sign Up", "Log In", "Log Out", "Video Play",
    "Video Pause", "Share", "Invite Sent", "Subscription Renewed", "Error", "Form Submitted",
    "Item Viewed", "Notification Opened", "App Open", "App Close", "Settings Changed",
)
_WORDS = (
    "alpha", "river", "stone", "cloud", "amber", "delta", "ember", "frost", "grove",
    "harbor", "iris", "jade", "karma", "lotus", "maple", "nova", "onyx", "pearl",
    "quartz", "raven", "sierra", "tango", "umber", "vista", "willow", "xenon", "yarrow",
    "zephyr", "blue", "green", "swift", "quiet", "bright", "north", "south", "summer",
)
_CITIES = (
    ("San Francisco", "California", "US"), ("New York", "New York", "US"),
    ("London", "England", "GB"), ("Berlin", "Berlin", "DE"), ("Paris", "Ile-de-France", "FR"),
    ("Tokyo", "Tokyo", "JP"), ("Sao Paulo", "Sao Paulo", "BR"), ("Bengaluru", "Karnataka", "IN"),
    ("Sydney", "New South Wales", "AU"), ("Toronto", "Ontario", "CA"), ("Madrid", "Madrid", "ES"),
    ("Zürich", "Zürich", "CH"), ("München", "Bayern", "DE"), ("Kraków", "Lesser Poland", "PL"),
)
_BROWSERS = ("Chrome", "Safari", "Firefox", "Edge", "Mobile Safari", "Chrome iOS", "Samsung Internet")
_OSES = ("Windows", "Mac OS X", "iOS", "Android", "Linux", "Chrome OS")
_USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.6367.82 Mobile Safari/537.36",
)


def _fragment(key: str, value: Any) -> bytes:
    return orjson.dumps(key) + b":" + orjson.dumps(value)


def _hex(rng: random.Random, digits: int) -> str:
    return f"{rng.getrandbits(digits * 4):0{digits}x}"


class LineMaker:
    """Makes one line at a time; all randomness comes from two seeded Randoms.

    The second one only decides which lines give a key twice, and how.
    """

    def __init__(self, rng: random.Random, duplicates: random.Random, reference_seconds: int) -> None:
        self._rng = rng
        self._reference = reference_seconds  # event times lie in the _DAYS before it
        # Duplicate keys draw from their own stream: the other lines stay as they were.
        self._duplicates = duplicates
        self._users = [f"u-{_hex(rng, 12)}" for _ in range(20_000)]
        self._devices = [_hex(rng, 8) + "-" + _hex(rng, 4) + "-" + _hex(rng, 12) for _ in range(5_000)]
        self._companies = [f"{rng.choice(_WORDS)}-{rng.choice(_WORDS)}-{n}" for n in range(500)]
        self._names = [orjson.dumps(name) for name in _EVENT_NAMES]
        pools = self._property_pools()
        flat = [pool for key, pool in pools.items() if key not in _NESTED_KEYS]
        self._nested_pools = [pools[key] for key in _NESTED_KEYS]
        # Each event takes the first n pools of one of these orders: distinct keys.
        self._key_orders = [rng.sample(flat, len(flat)) for _ in range(_KEY_ORDERS)]
        self._random = rng.random
        self._recent: list[tuple[bytes, list[bytes], bool]] = []
        self._recent_next = 0
        self._rejects = self._reject_makers()

    @property
    def users(self) -> list[str]:
        """The string user ids events draw from (benchmarks/deletion_list.py names some)."""
        return self._users

    def line(self) -> bytes:
        """The next line of the corpus (without its ending)."""
        draw = self._rng.random()
        if draw < _BLANK:
            return b"" if draw < _BLANK / 2 else b"  \t"
        if draw < _REJECT:
            return self._rng.choice(self._rejects)()
        if draw < _GROUP:
            return self._group_update()
        if draw < _PROFILE:
            return self._profile_update()
        if draw < _RESEND and self._recent:
            return self._resend()
        return self._event()

    # --- events -----------------------------------------------------------------------------

    def _property_pools(self) -> dict[str, list[bytes]]:
        rng = self._rng

        def words(n: int) -> str:
            return " ".join(rng.choice(_WORDS) for _ in range(n))

        makers: dict[str, Callable[[], Any]] = {
            "$browser": lambda: rng.choice(_BROWSERS),
            "$browser_version": lambda: rng.randint(90, 125),
            "$os": lambda: rng.choice(_OSES),
            "$city": lambda: rng.choice(_CITIES)[0],
            "$region": lambda: rng.choice(_CITIES)[1],
            "mp_country_code": lambda: rng.choice(_CITIES)[2],
            "$current_url": lambda: f"https://www.example.com/{words(2).replace(' ', '/')}?ref={rng.choice(_WORDS)}",
            "$referrer": lambda: f"https://{rng.choice(_WORDS)}.example.org/{rng.choice(_WORDS)}",
            "$referring_domain": lambda: f"{rng.choice(_WORDS)}.example.org",
            "$screen_height": lambda: rng.choice((667, 768, 844, 900, 1080, 1440)),
            "$screen_width": lambda: rng.choice((375, 390, 1280, 1366, 1920, 2560)),
            "mp_lib": lambda: rng.choice(("web", "android", "iphone", "python", "node")),
            "$lib_version": lambda: f"2.{rng.randint(40, 55)}.{rng.randint(0, 9)}",
            "user_agent": lambda: rng.choice(_USER_AGENTS),
            "page_title": lambda: words(rng.randint(2, 6)).title(),
            "plan": lambda: rng.choice(("free", "starter", "growth", "enterprise")),
            "price": lambda: round(rng.uniform(1, 500), 2),
            "currency": lambda: rng.choice(("USD", "EUR", "GBP", "JPY")),
            "quantity": lambda: rng.randint(1, 12),
            "item_id": lambda: f"sku-{rng.randint(1000, 99999)}",
            "category": lambda: rng.choice(_WORDS),
            "search_term": lambda: words(rng.randint(1, 3)),
            "experiment": lambda: f"exp-{rng.randint(1, 40)}",
            "variant": lambda: rng.choice(("control", "a", "b", "c")),
            "utm_source": lambda: rng.choice(("google", "newsletter", "twitter", "partner")),
            "utm_medium": lambda: rng.choice(("cpc", "email", "social", "referral")),
            "utm_campaign": lambda: f"{rng.choice(_WORDS)}-{rng.randint(2020, 2024)}",
            "duration_ms": lambda: rng.randint(10, 600_000),
            "success": lambda: rng.random() < 0.9,
            "error_code": lambda: rng.choice((None, 400, 401, 404, 500, 503)),
            "app_version": lambda: f"{rng.randint(1, 9)}.{rng.randint(0, 30)}.{rng.randint(0, 9)}",
            "build_number": lambda: rng.randint(1000, 9999),
            "locale": lambda: rng.choice(("en-US", "en-GB", "de-DE", "fr-FR", "ja-JP", "pt-BR")),
            "timezone": lambda: rng.choice(("UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo")),
            "session_id": lambda: _hex(rng, 16),
            "cart_value": lambda: round(rng.uniform(0, 900), 2),
            "coupon": lambda: rng.choice(("", "SPRING10", "WELCOME", "VIP25")),
            "is_first_visit": lambda: rng.random() < 0.2,
            "scroll_depth": lambda: rng.randint(0, 100),
            "video_id": lambda: f"vid_{_hex(rng, 10)}",
            "position": lambda: rng.randint(1, 50),
            "rating": lambda: rng.choice((1, 2, 3, 4, 5, 4.5)),
            "feature_flag": lambda: f"ff_{rng.choice(_WORDS)}",
            "latency_s": lambda: round(rng.expovariate(3), 4),
            "description": lambda: words(rng.randint(6, 16)),
            # Lists and objects send a line through the rules' shape walk.
            "tags": lambda: [rng.choice(_WORDS) for _ in range(rng.randint(1, 4))],
            "cart": lambda: {"items": rng.randint(1, 9), "total": round(rng.uniform(5, 400), 2)},
            "context": lambda: {"app": {"name": "shop", "build": rng.randint(100, 999)}},
        }
        return {
            key: sorted({_fragment(key, make()) for _ in range(64)}) for key, make in makers.items()
        }

    def _time(self) -> bytes:
        random = self._random
        seconds = self._reference - 600 - int(random() * (_DAYS * 86_400 - 600))
        draw = random()
        if draw < 0.80:
            value: Any = seconds
        elif draw < 0.90:
            value = seconds * 1000 + int(random() * 1000)  # milliseconds
        elif draw < 0.95:
            value = seconds + int(random() * 1000) / 1000  # float seconds
        else:
            iso = _iso(seconds)
            value = iso + "Z" if draw < 0.98 else iso + "+00:00"
        return b'"time":' + orjson.dumps(value)

    def _distinct_id(self) -> bytes:
        random = self._random
        draw = random()
        if draw < 0.95:
            return b'"distinct_id":' + orjson.dumps(self._users[int(random() * len(self._users))])
        if draw < 0.98:  # integer ids are normalised to strings
            return b'"distinct_id":' + str(1 + int(random() * 50_000)).encode()
        return b'"$device_id":' + orjson.dumps(self._devices[int(random() * len(self._devices))])

    def _event(self) -> bytes:
        random = self._random
        name = self._names[int(random() * len(self._names))]
        has_insert_id = random() < 0.7
        fixed = [self._time(), self._distinct_id()]
        if has_insert_id:
            insert_id = _hex(self._rng, 32)
            if random() < 0.5:  # UUID form
                insert_id = f"{insert_id[:8]}-{insert_id[8:12]}-{insert_id[12:16]}-{insert_id[16:20]}-{insert_id[20:]}"
            fixed.append(b'"$insert_id":"' + insert_id.encode() + b'"')
        others = 8 + int(random() * 13) - len(fixed)  # 8 to 20 properties in all
        order = self._key_orders[int(random() * _KEY_ORDERS)]
        fragments = fixed + [pool[int(random() * len(pool))] for pool in order[:others]]
        if random() < _NESTED_SHARE:
            nested = self._nested_pools[int(random() * len(self._nested_pools))]
            fragments[-1] = nested[int(random() * len(nested))]
        if self._duplicates.random() < _DUPLICATE_KEY_SHARE:
            fragments = self._with_duplicate_key(fragments)
        self._remember(name, fragments, has_insert_id)
        return _event_line(name, fragments)

    def _with_duplicate_key(self, fragments: list[bytes]) -> list[bytes]:
        """The fragments with a stale value of one key given before the one that wins."""
        rng = self._duplicates
        index = rng.randrange(len(fragments))
        key = fragments[index].split(b":", 1)[0]  # keys hold no colon
        stale = key + b':"stale"' if rng.random() < 0.5 else key + b":null"
        return fragments[:index] + [stale] + fragments[index:]

    def _remember(self, name: bytes, fragments: list[bytes], has_insert_id: bool) -> None:
        entry = (name, fragments, has_insert_id)
        if len(self._recent) < _RESEND_WINDOW:
            self._recent.append(entry)
        else:
            self._recent[self._recent_next] = entry
            self._recent_next = (self._recent_next + 1) % _RESEND_WINDOW

    def _resend(self) -> bytes:
        """A re-sent event: the same overwrite key, so only the latest upload survives."""
        random = self._random
        name, fragments, has_insert_id = self._recent[int(random() * len(self._recent))]
        if has_insert_id and random() < 0.4:
            # Same $insert_id, name, user and day; the content changed.
            return _event_line(name, fragments + [b'"resent":' + str(1 + int(random() * 5)).encode()])
        return _event_line(name, fragments)

    # --- profile and group updates ----------------------------------------------------------

    def _profile_update(self) -> bytes:
        rng = self._rng
        draw = rng.random()
        record: dict[str, Any] = {"$token": "bench-token"}
        record["$distinct_id"] = rng.choice(self._users[:5000]) if draw < 0.97 else rng.randint(1, 50_000)
        if rng.random() < 0.3:
            record["$ip"] = f"203.0.113.{rng.randint(1, 254)}"
        op = rng.choices(
            ("$set", "$set_once", "$add", "$union", "$append", "$remove", "$unset", "$delete"),
            weights=(60, 12, 10, 6, 4, 3, 4, 1),
        )[0]
        city = rng.choice(_CITIES)
        if op == "$set":
            value: Any = {
                "$name": f"{rng.choice(_WORDS).title()} {rng.choice(_WORDS).title()}",
                "$email": f"{rng.choice(_WORDS)}.{rng.randint(1, 999)}@example.com",
                "plan": rng.choice(("free", "starter", "growth", "enterprise")),
                "$city": city[0],
                "$region": city[1],
                "$country_code": city[2],
            }
            for key in rng.sample(("company", "role", "seats", "last_login", "newsletter"), rng.randint(0, 3)):
                value[key] = rng.choice(_WORDS) if key in ("company", "role") else rng.randint(1, 100)
        elif op == "$set_once":
            value = {"first_seen": _iso(self._reference - rng.randrange(400 * 86_400)) + "Z",
                     "signup_source": rng.choice(("ads", "organic", "referral"))}
        elif op == "$add":
            value = {"logins": 1, "credits": rng.randint(-5, 50)}
        elif op == "$union":
            value = {"tags": [rng.choice(_WORDS) for _ in range(rng.randint(1, 3))]}
        elif op == "$append":
            value = {"visited": rng.choice(_WORDS)}
        elif op == "$remove":
            value = {"tags": rng.choice(_WORDS)}
        elif op == "$unset":
            value = ["old_plan", "trial_end"][: rng.randint(1, 2)]
        else:
            value = ""
        record[op] = value
        line = orjson.dumps(record)
        if op == "$set" and self._duplicates.random() < _DUPLICATE_KEY_SHARE:
            line = line.replace(b'"$set":{', b'"$set":{"plan":"stale",', 1)
        return line

    def _group_update(self) -> bytes:
        rng = self._rng
        record: dict[str, Any] = {"$token": "bench-token"}
        if rng.random() < 0.7:
            record["$group_key"] = "company_id"
            record["$group_id"] = rng.choice(self._companies)
        else:
            record["$group_key"] = "team_id"
            record["$group_id"] = rng.randint(1, 300)  # integer ids become strings
        op = rng.choices(("$set", "$set_once", "$union", "$remove", "$unset", "$delete"),
                         weights=(70, 10, 8, 5, 5, 2))[0]
        if op == "$set":
            value: Any = {"name": f"{rng.choice(_WORDS).title()} Inc", "seats": rng.randint(1, 500),
                          "industry": rng.choice(("retail", "media", "finance", "health"))}
        elif op == "$set_once":
            value = {"created": _iso(self._reference - rng.randrange(900 * 86_400)) + "Z"}
        elif op == "$union":
            value = {"regions": [rng.choice(_CITIES)[2]]}
        elif op == "$remove":
            value = {"regions": rng.choice(_CITIES)[2]}
        elif op == "$unset":
            value = ["legacy_id"]
        else:
            value = None
        record[op] = value
        return orjson.dumps(record)

    # --- rejects ----------------------------------------------------------------------------

    def _reject_makers(self) -> list[Callable[[], bytes]]:
        rng = self._rng

        def event_with(**changes: Any) -> dict[str, Any]:
            record: dict[str, Any] = {
                "event": "Page View",
                "properties": {
                    "time": self._reference - rng.randrange(86_400),
                    "distinct_id": rng.choice(self._users),
                    "$browser": rng.choice(_BROWSERS),
                },
            }
            for key, value in changes.items():
                if key == "top":
                    record.update(value)
                elif value is None:
                    record["properties"].pop(key, None)
                else:
                    record["properties"][key] = value
            return record

        def dumps(**changes: Any) -> Callable[[], bytes]:
            return lambda: orjson.dumps(event_with(**changes))

        return [
            lambda: orjson.dumps(event_with())[:-rng.randint(2, 30)],  # truncated: invalid_json
            lambda: b"{'event': 'Page View', 'properties': {}}",  # invalid_json
            lambda: b'{"event":"Page View","properties":{"time":NaN,"distinct_id":"x1"}}',
            lambda: b'{"event":"Caf\xe9","properties":{"time":1717000000,"distinct_id":"u"}}',  # invalid_utf8
            lambda: b"[1,2,3]",  # not_an_object
            lambda: orjson.dumps({"name": "Page View", "time": 1717000000}),  # unknown_record_type
            dumps(time=None),  # missing_time
            dumps(time="yesterday"),  # invalid_time
            dumps(time=self._reference + 7 * 86_400),  # time_out_of_range (future)
            dumps(time=86_400),  # time_out_of_range (1970)
            dumps(distinct_id="undefined"),  # invalid_distinct_id
            dumps(distinct_id=None, **{"$os": "iOS"}),  # missing_distinct_id
            dumps(**{"$insert_id": "not a valid id!"}),  # invalid_insert_id
            dumps(top={"timestamp": 1717000000}),  # unexpected_field
            dumps(top={"event": ""}),  # missing_event_name
            lambda: orjson.dumps({"$distinct_id": rng.choice(self._users), "$token": "t"}),  # missing_operation
            lambda: orjson.dumps({"$distinct_id": rng.choice(self._users), "$set": {"a": 1}, "$unset": ["b"]}),
            lambda: orjson.dumps({"$group_key": "company_id", "$group_id": "acme", "$add": {"n": 1}}),
        ]


def _event_line(name: bytes, fragments: list[bytes]) -> bytes:
    return b'{"event":' + name + b',"properties":{' + b",".join(fragments) + b"}}"


def _iso(seconds: int) -> str:
    """UNIX seconds as ISO-8601 UTC without an offset: "YYYY-MM-DDTHH:MM:SS"."""
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
