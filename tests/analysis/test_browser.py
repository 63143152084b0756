"""The HTML report in a real browser: headless Chromium runs its JavaScript without errors, the
tables sort, the page fits 1280 px and 800 px windows (wide tables scroll inside their boxes, under
a sticky header row), and the page renders to a non-trivial screenshot.

``make test`` installs Chromium where it can (``.ci/install-browser``: Debian, root); elsewhere
these tests are skipped with the reason. In CI (``WATTWISE_REQUIRE_BROWSER=1``, set by
``.ci/run``) a missing Chromium fails them instead.
"""

from __future__ import annotations

import json
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
    return th.textContent.indexOf("inference energy (") === 0;  // its unit: of its numbers
  });
  function first() { return table.tBodies[0].rows[0].cells[col].getAttribute("data-sort"); }
  heads[col].click();
  document.body.dataset.sortAsc = first();
  heads[col].click();
  document.body.dataset.sortDesc = first();
})();
</script>
"""

#: Appended too: the layout of the page at the window's width (1280 px) and of the same report
#: in an 800 px frame (``srcdoc``: same origin, one browser launch for both widths), recorded on
#: <body> as "page scroll width, window width, tables sticking out of the page outside a scroll
#: box, the header cell's position, its box's overflow-x, whether the table scrolls in its box,
#: whether the trials table's header row stays at the top of its box as its rows scroll".
LAYOUT_PROBE = """
<script>
(function () {
  function layout(win) {
    var doc = win.document;
    var out = Array.prototype.filter.call(doc.querySelectorAll("table"), function (t) {
      return !t.closest(".scroll") && t.getBoundingClientRect().right > win.innerWidth + 1;
    }).length;
    var th = doc.querySelector("#variants-table thead th"), box = th.closest(".scroll");
    var trials = doc.getElementById("trials-table"), rows = trials.closest(".scroll");
    rows.scrollTop = 300;
    var head = trials.querySelector("thead th").getBoundingClientRect().top;
    var stuck = rows.scrollTop > 0 && Math.abs(head - rows.getBoundingClientRect().top) < 2;
    return [doc.documentElement.scrollWidth, win.innerWidth, out,
            win.getComputedStyle(th).position, box ? win.getComputedStyle(box).overflowX : "none",
            box ? box.scrollWidth > box.clientWidth : false, stuck].join(",");
  }
  document.body.dataset.layout1280 = layout(window);
  var frame = document.createElement("iframe");
  frame.style.cssText = "width: 800px; height: 900px; border: 0";
  frame.onload = function () { document.body.dataset.layout800 = layout(frame.contentWindow); };
  frame.srcdoc = REPORT;
  document.body.appendChild(frame);
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
    layout = LAYOUT_PROBE.replace("REPORT", json.dumps(html).replace("</", "<\\/"))
    probe.write_text(html.replace("</body>", SORT_PROBE + layout + "</body>"), encoding="utf-8")
    result = run_chromium(tmp_path, "--window-size=1280,900", "--dump-dom", probe.as_uri())
    dom, log = result.stdout, result.stderr
    assert 'data-ready="1"' in dom, "the report's script did not finish initializing"
    assert "Uncaught" not in log, log[-2000:]
    # the fixture's J/image: quantize:int8 is the cheapest, baseline the costliest
    asc = re.search(r'data-sort-asc="([^"]+)"', dom)
    desc = re.search(r'data-sort-desc="([^"]+)"', dom)
    assert asc and float(asc.group(1)) == pytest.approx(0.000816)
    assert desc and float(desc.group(1)) == pytest.approx(0.00204)
    assert 'aria-sort="descending"' in dom
    for width in (1280, 800):
        found = re.search(rf'data-layout{width}="([^"]+)"', dom)
        assert found, f"the layout probe did not run at {width} px"
        page, window, out, position, overflow, scrolls, stuck = found.group(1).split(",")
        assert int(window) == width
        assert int(page) <= width, f"the page scrolls sideways at {width} px ({page} px wide)"
        assert out == "0", f"{out} table(s) stick out of the page at {width} px"
        assert position == "sticky" and overflow == "auto", found.group(1)
        assert scrolls == "true", f"the variants table does not scroll in its box at {width} px"
        assert stuck == "true", f"the header row does not stay in view at {width} px"


def test_report_renders_to_a_screenshot(estimated_report: Any, tmp_path: Path) -> None:
    shot = tmp_path / "shot.png"
    uri = Path(estimated_report.html).resolve().as_uri()
    run_chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,2000", uri)
    assert shot.is_file() and shot.stat().st_size > 20_000
    with Image.open(shot) as image:
        assert image.size == (1280, 2000)
        colors = image.convert("RGB").getcolors(maxcolors=1_000_000)
    assert colors is not None and len(colors) > 50, "the screenshot is (nearly) blank"
