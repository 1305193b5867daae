"""The Prefect UI in a real browser: start rollout-wave from its form, approve the wave in the resume form.

Debian's chromium (/usr/bin/chromium, installed by `make install`) driven by the playwright wheel; no browser is
downloaded. Screenshots of every step go to test-output/browser/.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.deploy.stack import OUTPUT, Deployed

pytestmark = [pytest.mark.browser, pytest.mark.timeout(420)]  # includes starting the stack

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
SHOTS = OUTPUT / "browser"


def field(page, label: str):  # noqa: ANN001, ANN201 - playwright Page and Locator
    """A schema-form field by its label text (labels' `for` does not match the inputs' ids in this UI)."""
    pattern = re.compile(rf"^{re.escape(label)}( \(Optional\))?$")
    return page.locator(".schema-form-property").filter(
        has=page.locator(".schema-form-property__label", has_text=pattern)
    )


def test_start_a_wave_from_the_form_and_approve_it_in_the_ui(local_deploy: Deployed, tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.fail("/usr/bin/chromium is missing: run `make install` as root (apt-get install chromium)")
    from playwright.sync_api import expect, sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    run_name = f"browser-approval-{int(time.time())}"
    reports = tmp_path / "reports"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)

            # Find rollout-wave among the deployments and open its custom-run form.
            page.goto(f"{local_deploy.ui}/deployments")
            page.get_by_role("link", name="rollout-wave", exact=True).first.click()
            page.wait_for_url(re.compile(r".*/deployments/deployment/[0-9a-f-]+.*"))
            page.get_by_role("button", name="Run", exact=True).click()
            page.get_by_text("Custom run", exact=True).click()
            wave = field(page, "wave").locator("textarea")
            wave.wait_for()  # a single-page app: wait for the field, not for the page load
            page.screenshot(path=SHOTS / "1-form.png", full_page=True)

            # Fill the form: wave, dry run off (a real change), our own report folder, a run name to find it by.
            page.locator(".flow-run-name-input input").fill(run_name)
            wave.fill("canary")
            field(page, "report_dir").locator("textarea").fill(str(reports))
            dry_run = field(page, "dry_run").get_by_role("switch")
            dry_run.click()
            expect(dry_run).to_have_attribute("aria-checked", "false")
            page.screenshot(path=SHOTS / "2-filled.png", full_page=True)
            page.get_by_role("button", name="Submit", exact=True).click()

            # The deployment's page lists the new run; open it and watch it reach the approval pause.
            page.wait_for_url(re.compile(r".*/deployments/deployment/[0-9a-f-]+\?.*"))
            page.get_by_role("link", name=run_name, exact=True).click()
            page.wait_for_url(re.compile(r".*/runs/flow-run/[0-9a-f-]+.*"))
            flow_run_id = re.search(r"/runs/flow-run/([0-9a-f-]+)", page.url).group(1)
            run = local_deploy.wait_state(flow_run_id, {"PAUSED"} | {"FAILED", "CRASHED"}, timeout=120)
            assert run["state"]["type"] == "PAUSED", run["state"]
            assert run["parameters"]["wave"] == "canary" and run["parameters"]["dry_run"] is False
            badge = page.locator(".page-heading-flow-run__meta .state-badge")
            expect(badge).to_have_text("Paused", timeout=30_000)
            resume = page.get_by_role("button", name="Resume", exact=True)
            expect(resume).to_be_visible()
            page.screenshot(path=SHOTS / "3-paused.png")

            # Approve through the resume form built from WaveApproval.
            resume.click()
            expect(page.get_by_text("Start wave")).to_be_visible()
            field(page, "Approver").locator("textarea").fill("browser-test")
            field(page, "Comment").locator("textarea").fill("approved from the UI")
            page.screenshot(path=SHOTS / "4-approval-form.png")
            page.get_by_role("button", name="Submit", exact=True).click()

            run = local_deploy.wait_state(flow_run_id, {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}, 180)
            page.reload()
            expect(badge).to_have_text(run["state"]["name"], timeout=30_000)
            page.screenshot(path=SHOTS / "5-completed.png")
        finally:
            browser.close()
    assert run["state"]["type"] == "COMPLETED", run["state"]

    # The approval and the wave's outcome are in the run's report.
    import json

    [report_file] = reports.glob("wave-canary-*.json")
    report = json.loads(report_file.read_text())
    assert report["approval"]["by"] == "browser-test" and report["approval"]["via"] == "prefect-ui"
    wave_log = next(w for w in report["waves"] if w["name"] == "canary")
    assert wave_log["status"] == "done" and wave_log["clusters"] == 1
