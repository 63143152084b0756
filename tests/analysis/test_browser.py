"""The HTML report in a real browser: headless Chromium runs its JavaScript without errors, the
tables sort, and the page renders to a non-trivial screenshot.

``make test`` installs Chromium where it can (``.ci/install-browser``: Debian, root); elsewhere
these tests are skipped with the reason. In CI (``WATTWISE_REQUIRE_BROWSER=1``, set by
``.ci/run``) a missing Chromium fails them instead.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
TIMEOUT_S = 120

#: Appended to a copy of the report: sorts the variants by J/image both ways and records the
#: first row of each order on <body>, where --dump-dom shows it.
SORT_PROBE = """
<script>
(function () {
  var table = document.getElementById("variants-table");
  var heads = Array.prototype.slice.call(table.querySelectorAll("thead th"));
  var col = heads.findIndex(function (th) {
    return th.textContent.indexOf("inference energy (J/image)") === 0;
  });
  function first() { return table.tBodies[0].rows[0].cells[col].getAttribute("data-sort"); }
  heads[col].click();
  document.body.dataset.sortAsc = first();
  heads[col].click();
  document.body.dataset.sortDesc = first();
})();
</script>
"""


def chromium() -> str:
    for name in CHROMIUM_CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    if os.access("/usr/bin/chromium", os.X_OK):
        return "/usr/bin/chromium"
    why = (
        "Chromium is not installed, so the HTML report cannot be checked in a browser "
        "(install it: apt-get install -y chromium; make test does so as root on Debian)"
    )
    if os.environ.get("WATTWISE_REQUIRE_BROWSER"):
        pytest.fail(why + "; CI requires it (WATTWISE_REQUIRE_BROWSER)")
    pytest.skip(why)


def run_chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--disable-dev-shm-usage", "--disable-extensions",
        f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0", *args,
    ]  # fmt: skip
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=TIMEOUT_S, cwd=tmp_path, check=False
    )
    assert result.returncode == 0, f"chromium failed ({result.returncode}): {result.stderr[-2000:]}"
    return result


def test_report_javascript_runs_and_sorts(estimated_report: Any, tmp_path: Path) -> None:
    html = Path(estimated_report.html).read_text(encoding="utf-8")
    probe = tmp_path / "report.html"
    probe.write_text(html.replace("</body>", SORT_PROBE + "</body>"), encoding="utf-8")
    result = run_chromium(tmp_path, "--dump-dom", probe.as_uri())
    dom, log = result.stdout, result.stderr
    assert 'data-ready="1"' in dom, "the report's script did not finish initializing"
    assert "Uncaught" not in log, log[-2000:]
    # the fixture's J/image: quantize:int8 is the cheapest, baseline the costliest
    asc = re.search(r'data-sort-asc="([^"]+)"', dom)
    desc = re.search(r'data-sort-desc="([^"]+)"', dom)
    assert asc and float(asc.group(1)) == pytest.approx(0.000816)
    assert desc and float(desc.group(1)) == pytest.approx(0.00204)
    assert 'aria-sort="descending"' in dom


def test_report_renders_to_a_screenshot(estimated_report: Any, tmp_path: Path) -> None:
    shot = tmp_path / "shot.png"
    uri = Path(estimated_report.html).resolve().as_uri()
    run_chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,2000", uri)
    assert shot.is_file() and shot.stat().st_size > 20_000
    with Image.open(shot) as image:
        assert image.size == (1280, 2000)
        colors = image.convert("RGB").getcolors(maxcolors=1_000_000)
    assert colors is not None and len(colors) > 50, "the screenshot is (nearly) blank"
