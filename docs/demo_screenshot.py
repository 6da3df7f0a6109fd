"""The README's picture: the condition comparisons of the demo report, in headless Chromium.

Run as ``python docs/demo_screenshot.py [reports/demo/report.html]`` after ``hcs demo`` (needs
playwright and Debian's ``chromium``, as the browser tests). Writes ``docs/img/demo-report.png``.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def main() -> None:
    from playwright.sync_api import sync_playwright

    html = Path(sys.argv[1] if len(sys.argv) > 1 else "reports/demo/report.html").resolve()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    out = REPO / "docs" / "img" / "demo-report.png"
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(profile, executable_path=chromium,
                                                    headless=True, args=ARGS,
                                                    viewport={"width": 1300, "height": 900})
        page = ctx.new_page()
        page.goto(html.as_uri())
        page.wait_for_function("window.hcsReport && window.hcsReport.ready", timeout=120_000)
        page.add_style_tag(content="nav, th { position: static !important; }")
        box = page.locator("section#conditions").bounding_box()
        page.screenshot(path=str(out), clip={"x": box["x"], "y": box["y"],
                                             "width": box["width"],
                                             "height": min(box["height"], 1100)},
                        full_page=True)
        ctx.close()
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
