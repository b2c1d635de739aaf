"""The run report in a real headless browser (Debian's chromium): the charts draw their bars.

Run as a script, it writes the README's screenshot: `python tests/test_report_browser.py
[REPORT.html]` renders the bundled sample's report (or shows the given one) into docs/report.png.
"""

import contextlib
import datetime
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from pipeline.report import render_report
from test_report import sample_summary, summary_with_days

CHROMIUM = "/usr/bin/chromium"
INSTALL_TIMEOUT = 900
BROWSER_TIMEOUT = 90
WINDOW = (1200, 1800)
REPO = Path(__file__).resolve().parent.parent
SCREENSHOT = REPO / "docs" / "report.png"
# Headless, and quiet: no sandbox (CI runs as root), no GPU, no network of its own.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    # Lets the page's load handler run before the DOM is dumped, without real waiting.
    "--virtual-time-budget=5000",
]


def _run(command: list[str], timeout: float, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Runs a command in its own process group; kills the whole group when it overruns.

    Chromium starts helper processes that hold the output pipes open, so a
    plain subprocess.run timeout could still hang waiting for them.
    """
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,
        env={**os.environ, **(env or {})},
    )
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
        pytest.fail(f"{command[0]} took more than {timeout} s: {' '.join(command)}")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # helpers left behind
    return proc.returncode, output


def _install_chromium() -> str:
    if os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    if shutil.which("apt-get") is None:
        pytest.fail(f"{CHROMIUM} is missing and there is no apt-get to install it")
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
        status, output = _run(command, INSTALL_TIMEOUT, env)
        if status != 0:
            pytest.fail(f"{' '.join(command)} failed ({status}):\n{output[-3000:]}")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"apt-get installed chromium but {CHROMIUM} is missing")
    return CHROMIUM


@pytest.fixture(scope="module")
def chromium() -> str:
    """The path of Debian's chromium, installed with apt-get when missing."""
    return _install_chromium()


def browse(chromium: str, page: Path, *args: str) -> str:
    """Opens `page` headless with `args` (e.g. --dump-dom); returns what chromium printed."""
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        status, output = _run([chromium, *FLAGS, f"--user-data-dir={profile}", *args, page.as_uri()], BROWSER_TIMEOUT)
    assert status == 0, f"chromium exited with {status}:\n{output[-3000:]}"
    return output


def drawn_bars(chromium: str, tmp_path: Path, summary: dict) -> tuple[int, int]:
    """(bars expected, bars the browser drew with a non-zero size) for the summary's report."""
    page = tmp_path / "_REPORT.html"
    page.write_text(render_report(summary), encoding="utf-8")
    dom = browse(chromium, page, "--dump-dom")
    body = re.search(r"<body\b[^>]*>", dom)
    assert body, f"no <body> in the dumped DOM:\n{dom[-3000:]}"
    expected = re.search(r'data-bars-expected="(\d+)"', body.group(0))
    drawn = re.search(r'data-bars-drawn="(\d+)"', body.group(0))
    assert expected and drawn, f"the report's script did not run: {body.group(0)}"
    return int(expected.group(1)), int(drawn.group(1))


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def screenshot(chromium: str, page: Path, target: Path) -> None:
    """Writes a WINDOW-sized screenshot of `page` to `target`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    browse(chromium, page, f"--window-size={WINDOW[0]},{WINDOW[1]}", f"--screenshot={target}")


def test_the_sample_report_draws_every_bar(chromium, tmp_path):
    assert drawn_bars(chromium, tmp_path, sample_summary()) == (10, 10)


def test_a_report_of_400_days_draws_every_bar(chromium, tmp_path):
    first = datetime.date(2023, 1, 1)
    by_day = {(first + datetime.timedelta(days=i)).isoformat(): i % 50 + 1 for i in range(400)}

    assert drawn_bars(chromium, tmp_path, summary_with_days(by_day)) == (402, 402)


def test_a_report_without_events_draws_the_reject_bars(chromium, tmp_path):
    assert drawn_bars(chromium, tmp_path, summary_with_days({})) == (2, 2)


def test_markup_in_the_data_does_not_run(chromium, tmp_path):
    payload = (
        "<img src=x onerror=\"document.body.setAttribute('data-pwned','1')\">"
        "<script>document.body.setAttribute('data-pwned','2')</script>"
    )
    summary = sample_summary()
    summary["details"]["top_events"][0]["name"] = payload
    summary["details"]["reject_examples"]["invalid_json"][0]["line"] = payload
    summary["options"]["input"] = [payload]
    page = tmp_path / "_REPORT.html"
    page.write_text(render_report(summary), encoding="utf-8")

    dom = browse(chromium, page, "--dump-dom")

    assert 'data-bars-drawn="10"' in dom
    assert "data-pwned" not in re.search(r"<body\b[^>]*>", dom).group(0)


def test_the_sample_report_screenshot(chromium, tmp_path):
    page = tmp_path / "_REPORT.html"
    page.write_text(render_report(sample_summary()), encoding="utf-8")
    target = tmp_path / "report.png"

    screenshot(chromium, page, target)

    assert png_size(target) == WINDOW
    assert target.stat().st_size > 20_000  # a blank page compresses to a few kB


def main(argv: list[str]) -> int:
    """Writes docs/report.png from the given report, or from the sample's."""
    with tempfile.TemporaryDirectory() as tmp:
        if argv:
            page = Path(argv[0]).resolve()
        else:
            page = Path(tmp) / "_REPORT.html"
            page.write_text(render_report(sample_summary()), encoding="utf-8")
        screenshot(_install_chromium(), page, SCREENSHOT)
    print(f"wrote {SCREENSHOT.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
