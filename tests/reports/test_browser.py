"""The HTML report in a real headless Chromium (Debian's ``chromium``, driven by Playwright).

No browser is downloaded: Playwright's driver launches the system executable with a fresh
profile. Without Chromium or Playwright the test skips locally and fails under ``CI=true``.
The screenshot lands in ``test-artifacts/report.png`` (git-ignored) for a person to look at.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reports.atomic import write_atomic
from reports.render import html as html_module
from reports.render.html import HtmlRenderer
from tests.conftest import missing
from tests.reports.render.test_html import IMG_TEXT, SCRIPT_CN, TEMPLATE_TEXT, sample_report

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _chromium() -> str:
    path = os.environ.get("CERTSCAN_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not os.access(path, os.X_OK):
        missing("chromium is not installed (apt-get install chromium)")
    return path


@pytest.fixture
def browser_page(tmp_path: Path) -> Iterator[tuple[Any, list[str], list[str]]]:
    """A page in a fresh Chromium profile, with the dialogs and console errors it produces."""
    executable = _chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("the playwright Python package is not installed (pip install playwright)")
    dialogs: list[str] = []
    errors: list[str] = []
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=executable,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1366, "height": 900},
            offline=True,
        )
        try:
            page = context.new_page()
            page.set_default_timeout(5000)

            def on_dialog(dialog: Any) -> None:
                dialogs.append(f"{dialog.type}: {dialog.message}")
                dialog.dismiss()

            page.on("dialog", on_dialog)
            page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
            page.on(
                "console",
                lambda msg: errors.append(msg.text) if msg.type in ("error", "warning") else None,
            )
            yield page, dialogs, errors
        finally:
            context.close()


def _column(page: Any, table: str, index: int) -> list[str]:
    cells = page.locator(f"#{table} tbody tr:not([hidden]) td:nth-child({index})")
    return [text.strip() for text in cells.all_inner_texts()]


def test_report_in_chromium(tmp_path: Path, browser_page: tuple[Any, list[str], list[str]]) -> None:
    from playwright.sync_api import expect

    page, dialogs, errors = browser_page
    report = sample_report()
    target = tmp_path / "report.html"
    write_atomic(target, HtmlRenderer().render(report))
    page.goto(target.as_uri())

    # Tables render with one row per finding and per endpoint.
    findings = page.locator("#findings-table tbody tr")
    inventory = page.locator("#inventory-table tbody tr")
    expect(findings).to_have_count(report.summary.findings)
    expect(inventory).to_have_count(len(report.endpoints))
    expect(page.locator("#inventory .filters output")).to_have_text("6 rows")  # the script ran

    # Hostile certificate text is shown as text; nothing it contains became an element.
    expect(page.locator("#inventory-table a", has_text=SCRIPT_CN)).to_have_text(SCRIPT_CN)
    expect(page.get_by_text(IMG_TEXT).first).to_be_visible()
    assert TEMPLATE_TEXT in page.locator("#findings-table").inner_text()
    expect(page.locator("img")).to_have_count(0)
    expect(page.locator("script")).to_have_count(1)

    # Sorting: "Days left" ascending puts the expired leaf first and the failed endpoint last.
    days = page.locator("#inventory-table th", has_text="Days left")
    days.locator("button").click()
    expect(days).to_have_attribute("aria-sort", "ascending")
    column = _column(page, "inventory-table", 7)
    numbers = [int(value) for value in column if value]
    assert numbers == sorted(numbers)
    assert numbers[0] < 0
    assert column[-1] == ""
    days.locator("button").click()
    expect(days).to_have_attribute("aria-sort", "descending")
    numbers = [int(value) for value in _column(page, "inventory-table", 7) if value]
    assert numbers == sorted(numbers, reverse=True)
    page.locator("#findings-table th", has_text="Endpoint").locator("button").click()
    endpoints = _column(page, "findings-table", 3)
    assert endpoints == sorted(endpoints)

    # Filtering: by text (hostile text included) and by severity.
    box = page.locator('[data-filter-for="findings-table"]')
    box.locator("input").fill("<script>")
    expect(box.locator("output")).to_have_text("1 of 8 rows")
    expect(page.locator("#findings-table tbody tr:not([hidden])")).to_have_count(1)
    box.locator("input").fill("")
    box.locator("select").select_option("4")
    expect(box.locator("output")).to_have_text("2 of 8 rows")
    assert set(_column(page, "findings-table", 1)) == {"critical"}
    inventory_box = page.locator('[data-filter-for="inventory-table"]')
    inventory_box.locator("input").fill("xss.example")
    expect(page.locator("#inventory-table tbody tr:not([hidden])")).to_have_count(1)
    inventory_box.locator("input").fill("")
    expect(inventory_box.locator("output")).to_have_text("6 rows")

    # A certificate link opens that certificate's details.
    page.locator("#inventory-table a", has_text=SCRIPT_CN).click()
    opened = page.locator("details[open]")
    expect(opened).to_have_count(1)
    expect(opened.locator("summary .name")).to_have_text(SCRIPT_CN)

    box.locator("select").select_option("")
    expect(box.locator("output")).to_have_text("8 rows")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)

    assert dialogs == []
    assert errors == []  # a CSP violation (wrong hash) would be reported here


def test_long_tables_show_a_page_of_rows(
    tmp_path: Path,
    browser_page: tuple[Any, list[str], list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from playwright.sync_api import expect

    page, dialogs, errors = browser_page
    monkeypatch.setattr(html_module, "PAGE_ROWS", 4)
    target = tmp_path / "paged.html"
    write_atomic(target, HtmlRenderer().render(sample_report()))
    page.goto(target.as_uri())

    box = page.locator('[data-filter-for="inventory-table"]')
    visible = page.locator("#inventory-table tbody tr:not([hidden])")
    expect(visible).to_have_count(4)
    expect(box.locator("output")).to_have_text("first 4 of 6 matching rows (6 in all)")
    # sorting works on every row, then shows the first page of the new order
    page.locator("#inventory-table th", has_text="Days left").locator("button").click()
    expect(visible).to_have_count(4)
    assert _column(page, "inventory-table", 7) == ["-3", "5", "50", "190"]
    box.locator("button.more").click()
    expect(visible).to_have_count(6)
    expect(box.locator("output")).to_have_text("6 rows")
    expect(box.locator("button.more")).to_be_hidden()
    assert _column(page, "inventory-table", 7)[-1] == ""  # no chain: sorted last
    assert dialogs == []
    assert errors == []


def test_automation_column_in_chromium(
    tmp_path: Path, browser_page: tuple[Any, list[str], list[str]]
) -> None:
    """The inventory's "Automation" column shows how each endpoint renews, with the lead times
    as a tooltip, and sorts like any other column."""
    from dataclasses import replace

    from playwright.sync_api import expect

    from reports.output import build_report

    page, dialogs, errors = browser_page
    report = sample_report()
    labels = ["automated", "irregular", "one renewal", "no renewal seen"]
    views = tuple(
        replace(view, automation=labels[n % 4], lead_days=(30.0, 29.5) if n % 4 == 0 else ())
        for n, view in enumerate(report.endpoints)
    )
    report = build_report(views, generated_at=report.generated_at, scan=report.scan)
    target = tmp_path / "report.html"
    write_atomic(target, HtmlRenderer().render(report))
    page.goto(target.as_uri())

    header = page.locator("#inventory-table th", has_text="Automation")
    expect(header).to_have_count(1)
    index = page.locator("#inventory-table thead th").all_inner_texts().index("Automation") + 1
    shown = _column(page, "inventory-table", index)
    assert sorted(shown) == sorted(labels[n % 4] for n in range(len(views)))
    tip = page.locator("#inventory-table td.auto span", has_text="automated").first
    expect(tip).to_have_attribute("title", "renewal lead times (days before expiry): 30.0, 29.5")
    header.locator("button").click()
    ordered = _column(page, "inventory-table", index)
    assert ordered in (sorted(ordered), sorted(ordered, reverse=True))
    assert dialogs == []
    assert errors == []


def test_estate_charts_in_chromium(
    tmp_path: Path, browser_page: tuple[Any, list[str], list[str]]
) -> None:
    """The Estate section draws one inline SVG chart per dimension, loads nothing, and its
    hostile labels stay text."""
    from dataclasses import replace

    from playwright.sync_api import expect

    from reports.output import build_report

    page, dialogs, errors = browser_page
    report = sample_report()
    views = tuple(
        replace(view, owner=SCRIPT_CN if n == 0 else "web-team")
        for n, view in enumerate(report.endpoints)
    )
    report = build_report(views, generated_at=report.generated_at, scan=report.scan)
    target = tmp_path / "report.html"
    write_atomic(target, HtmlRenderer().render(report))
    page.goto(target.as_uri())
    charts = page.locator("#estate figure.chart")
    expect(charts).to_have_count(6)
    expect(charts.first.locator("figcaption")).to_have_text("by owner")
    owner_bars = charts.first.locator("g.ebar")
    expect(owner_bars).to_have_count(2)
    assert SCRIPT_CN in charts.first.inner_text() or "…" in charts.first.inner_text()
    expect(page.locator("script")).to_have_count(1)
    box = charts.first.locator("svg").bounding_box()
    assert box is not None
    assert box["width"] > 200
    assert dialogs == []
    assert errors == []


def test_owner_filter_in_chromium(
    tmp_path: Path, browser_page: tuple[Any, list[str], list[str]]
) -> None:
    """The Owner choice keeps one owner's rows (or the unowned ones) in both tables, together
    with the severity filter, and a hostile owner name stays text."""
    from dataclasses import replace

    from playwright.sync_api import expect

    from reports.output import build_report

    page, dialogs, errors = browser_page
    report = sample_report()
    owners = ["web-team", SCRIPT_CN, None]
    views = tuple(replace(view, owner=owners[n % 3]) for n, view in enumerate(report.endpoints))
    report = build_report(views, generated_at=report.generated_at, scan=report.scan)
    target = tmp_path / "report.html"
    write_atomic(target, HtmlRenderer().render(report))
    page.goto(target.as_uri())

    choice = page.locator("#inventory .filters select.owner")
    expect(choice.locator("option")).to_have_text(["all", SCRIPT_CN, "web-team", "(unowned)"])
    rows = page.locator("#inventory-table tbody tr")
    total = rows.count()
    assert total == len(views)

    def visible() -> int:
        return page.locator("#inventory-table tbody tr:not([hidden])").count()

    expected = {o: sum(1 for v in views if v.owner == o) for o in owners}
    choice.select_option(label="web-team")
    assert visible() == expected["web-team"]
    choice.select_option(label=SCRIPT_CN)
    assert visible() == expected[SCRIPT_CN]
    choice.select_option(label="(unowned)")
    assert visible() == expected[None]
    choice.select_option(label="all")
    assert visible() == total

    findings = page.locator("#findings .filters select.owner")
    owned = sum(len(v.findings) for v in views if v.owner == "web-team")
    assert 0 < owned < sum(len(v.findings) for v in views)
    findings.select_option(label="web-team")
    assert page.locator("#findings-table tbody tr:not([hidden])").count() == owned
    page.locator("#findings .filters select.severity").select_option("3")
    high = sum(
        1 for v in views if v.owner == "web-team" for f in v.findings if int(f.severity) >= 3
    )
    assert page.locator("#findings-table tbody tr:not([hidden])").count() == high
    assert dialogs == []
    assert errors == []
