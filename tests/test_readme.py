"""The docs' promises that code can check: the README's reason examples, options and quick start,
the schema page's excerpt and drift illustration, and that README.md and docs/ hang together
(a README people read, links that lead somewhere, no path of one machine)."""

import codecs
import re
from pathlib import Path

import orjson
import pytest

from e2e import REPO, SAMPLE, run_cli
from pipeline.options import OWN_OPTIONS
from transforms.reasons import Kind, Reason
from transforms.rules import RuleConfig, classify
from transforms.schema_document import drift_counts

README_PATH = REPO / "README.md"
README = README_PATH.read_text(encoding="utf-8")
DOCS = REPO / "docs"
# Every page: the README, then docs/ in name order.
PAGES = [README_PATH, *sorted(DOCS.glob("*.md"))]
SCHEMA_PAGE = (DOCS / "schema.md").read_text(encoding="utf-8")
MAX_README_LINES = 400
CONFIG = RuleConfig(reference_time=1706745600)  # 2024-02-01T00:00:00Z
_ROW = re.compile(r"^\| `([a-z0-9_]+)` \| [^|]+ \| `(\{.*\}|\[.*\])`", re.MULTILINE)


def _examples():
    for reason, example in _ROW.findall(README):
        raw = example.encode("utf-8")
        if reason == "invalid_utf8":
            raw = codecs.escape_decode(raw)[0]  # the README spells the bad byte as \xe9
        yield pytest.param(reason, raw, id=f"{reason}:{example[:30]}")


EXAMPLES = list(_examples())


@pytest.mark.parametrize("reason, line", EXAMPLES)
def test_every_reason_example_in_the_readme_gets_that_reason(reason, line):
    fate = classify(line, CONFIG)
    assert fate.kind == Kind.REJECT
    assert fate.reason == Reason(reason)


def test_the_readme_documents_every_reason_with_an_example_line():
    documented = {reason for reason, _ in _ROW.findall(README)}
    prose_only = {"too_many_properties", "too_many_keys", "list_too_long", "record_too_large"}
    assert {r.value for r in Reason} - prose_only <= documented
    for reason in Reason:
        assert f"`{reason.value}`" in README


def test_the_readme_documents_every_option():
    for name in OWN_OPTIONS:
        assert f"`--{name.replace('_', '-')}" in README, name


def test_the_quick_start_is_exactly_two_commands():
    quick = README.split("## Quick start", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in quick.strip().splitlines()]
    assert commands == ["make run", "make test"]


def _subset(excerpt, actual, where="") -> None:
    """Asserts every key of the excerpt is in `actual` with the same value (recursively)."""
    if isinstance(excerpt, dict):
        assert isinstance(actual, dict), where
        for key, value in excerpt.items():
            assert key in actual, f"{where}.{key} is not in the real file"
            _subset(value, actual[key], f"{where}.{key}")
    else:
        assert excerpt == actual, where


@pytest.mark.parametrize("page", [README, SCHEMA_PAGE], ids=["README.md", "docs/schema.md"])
def test_the_schema_excerpt_is_part_of_the_samples_real_schema(tmp_path, page):
    block = page.split("<!-- schema-excerpt:", 1)[1].split("```json", 1)[1].split("```", 1)[0]
    excerpt = orjson.loads(block)
    out = tmp_path / "out"
    assert run_cli("--input", str(SAMPLE / "*"), "--output", str(out), "--reference-time", "2024-02-01T00:00:00Z") == 0
    actual = orjson.loads((out / "_SCHEMA.json").read_bytes())
    _subset(excerpt, actual)
    # Whole entries where the excerpt shows an event: every property of it.
    for name, entry in excerpt["events"].items():
        assert entry == actual["events"][name]


def test_the_drift_illustration_has_the_shape_drift_writes():
    block = SCHEMA_PAGE.split("## Drift", 1)[1].split("```json", 1)[1].split("```", 1)[0]
    drift = orjson.loads("{" + block + "}")["drift"]
    assert sorted(drift) == ["new_events", "new_properties", "removed_events", "removed_properties", "type_changes"]
    assert drift_counts(drift) == "1 new event, 1 new property, 1 type change"
    assert "schema drift    " + drift_counts(drift) in SCHEMA_PAGE


# --- README.md and docs/ as a whole --------------------------------------------------------

_FENCE = re.compile(r"^ *```.*?^ *```[^\n]*$", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"`[^`]*`")
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")  # [text](target "title"), images too
_URL = re.compile(r"[a-z][a-z0-9+.-]*:")
_HEADING = re.compile(r"^#{1,6} +(.+?) *#*$", re.MULTILINE)
# Folders whose files the pages name (`tests/emulators.py`), and the tests a guarantee cites
# in brackets: [test_lock, test_recovery], [benchmarks/fuzz.py].
_NAMED_PATH = re.compile(r"(?<![\w/.-])((?:tests|benchmarks|scheduling|examples|pipeline|transforms)/[\w./-]*\w)")
_CITED = re.compile(r"\[((?:test_\w+|benchmarks/\w+\.py)(?:,\s*(?:test_\w+|benchmarks/\w+\.py))*)\]")
# /tmp, /work, /root or a home folder on their own; `gs://$BUCKET/tmp` is a bucket's folder.
_MACHINE_PATH = re.compile(r"(?<![\w$.~/-])/(?:work|tmp|root|home/[a-z])[\w/.-]*")
IMAGE_HOME = "/home/prep/.config/gcloud"  # the local image's own user (docs/dataflow.md)


def _prose(text: str) -> str:
    """The page without its code blocks: a `#` or `[x](y)` in code is neither heading nor link."""
    return _FENCE.sub("", text)


def github_anchor(heading: str) -> str:
    """The id GitHub gives a heading: lowercase, punctuation but `-` and `_` dropped, spaces to `-`."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors of a page's headings; a repeated heading gets -1, -2… as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for heading in _HEADING.findall(_prose(page.read_text(encoding="utf-8"))):
        slug = github_anchor(heading)
        found.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
        seen[slug] = seen.get(slug, 0) + 1
    return found


def relative_links(page: Path) -> list[str]:
    """The targets of a page's links and images that are not URLs: `path`, `path#anchor`, `#anchor`."""
    # Code spans keep their length but lose their content: [`Dockerfile`](../Dockerfile) is a
    # link, `[ab](c)` in code is not.
    prose = _CODE_SPAN.sub(lambda m: "`" + "c" * (len(m[0]) - 2) + "`", _prose(page.read_text(encoding="utf-8")))
    return [m[1] for m in _LINK.finditer(prose) if not _URL.match(m[1])]


def _page_id(page: Path) -> str:
    return page.relative_to(REPO).as_posix()


def test_the_readme_is_short_enough_to_read():
    assert len(README.splitlines()) <= MAX_README_LINES


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_every_relative_link_leads_to_a_file_and_heading_that_exist(page):
    for link in relative_links(page):
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        assert target.exists(), f"{page.name}: {link} leads to no file"
        assert REPO in target.parents, f"{page.name}: {link} leads out of the repository"
        if anchor:
            assert target.suffix == ".md", f"{page.name}: {link}: an anchor in a page that is not Markdown"
            assert anchor in anchors(target), f"{page.name}: {link}: no such heading in {target.name}"


def test_the_link_check_reads_links_and_headings_as_github_does():
    assert github_anchor("Drift: what changed since the previous run") == "drift-what-changed-since-the-previous-run"
    assert github_anchor("Reading and writing gs:// and s3://") == "reading-and-writing-gs-and-s3"
    assert github_anchor("Without a template: `--runner X`") == "without-a-template---runner-x"
    assert github_anchor("Airflow / Cloud Composer") == "airflow--cloud-composer"
    assert "# or, with Docker:" not in str(anchors(DOCS / "dataflow.md"))  # a comment in a code block
    links = relative_links(DOCS / "dataflow.md")
    assert "../Dockerfile" in links and "../metadata.json" in links  # code in the link text
    assert "docs/report.png" in relative_links(README_PATH)  # images are links too
    assert not [link for link in relative_links(README_PATH) if "mixpanel.com" in link]  # URLs are not


def test_the_readme_links_every_docs_page():
    linked = {(REPO / link.partition("#")[0]).resolve() for link in relative_links(README_PATH)}
    assert sorted(p.name for p in DOCS.glob("*.md") if p.resolve() not in linked) == []


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_no_page_names_a_path_of_one_machine(page):
    found = set(_MACHINE_PATH.findall(page.read_text(encoding="utf-8")))
    assert sorted(found - {IMAGE_HOME}) == []


@pytest.mark.parametrize("page", [p for p in PAGES if p.name != "performance-profile.md"], ids=_page_id)
def test_every_file_and_test_a_page_names_exists(page):
    """Not the profile: it is a dated measurement, naming the files as they were then."""
    text = page.read_text(encoding="utf-8")
    named = set(_NAMED_PATH.findall(text))
    for cited in _CITED.findall(text):
        named |= {name if "/" in name else f"tests/{name}.py" for name in re.split(r",\s*", cited)}
    assert sorted(name for name in named if not (REPO / name).exists()) == []
