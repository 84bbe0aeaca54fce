"""The run page in a real browser: Debian's chromium, headless, driven by Playwright (never `playwright
install`). One drift signal goes through the stack; its flow run page must show the run, its artifacts
(decision, drift table and its histograms, model folder) and its events, and the Run form must offer a retrain by hand.

Skipped only when /usr/bin/chromium is absent (`.ci/run` installs it, so CI runs this). Screenshots go to
``$DRIFT_RETRAIN_SCREENSHOTS`` when set (``DRIFT_RETRAIN_SCREENSHOTS=docs`` refreshes the ones the docs pages
show), else to the test's temporary directory.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Iterator

import pytest

CHROMIUM = Path("/usr/bin/chromium")
# Known to work headless in containers: no sandbox (no user namespaces), no GPU, and no traffic of its own.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (apt-get install chromium)"),
]

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A fresh profile (--user-data-dir) in headless Debian chromium."""
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 1000},
        )
        context.set_default_timeout(60_000)
        expect.set_options(timeout=30_000)  # expect's own default is 5 s: too short for a busy machine
        yield context.new_page()
        context.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(os.environ.get("DRIFT_RETRAIN_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_the_flow_run_page_shows_the_run_its_artifacts_and_its_events(page, shots, stack, api, cockpit_run, tmp_path) -> None:
    assert cockpit_run["state"]["type"] == "COMPLETED"
    page.goto(stack.flow_run_url(cockpit_run["id"]))
    expect(page.get_by_text(cockpit_run["name"], exact=True).first).to_be_visible()
    expect(page.get_by_text("model:cockpit-model", exact=True).first).to_be_visible()
    expect(page.get_by_text("Completed", exact=True).first).to_be_visible()
    expect(page.get_by_text("decision:retrain", exact=True).first).to_be_visible()
    expect(page.get_by_text("copy run copy-", exact=False).first).to_be_visible()  # the external run's log line
    page.screenshot(path=str(shots / "flow-run.png"))

    page.get_by_text("Artifacts", exact=True).click()
    for key in ("decision-cockpit-model", "drift-cockpit-model", "copy-cockpit-model", "training-cockpit-model", "model-cockpit-model"):
        expect(page.get_by_text(key, exact=True).first).to_be_visible()

    page.get_by_text("decision-cockpit-model", exact=True).first.click()
    expect(page.get_by_role("heading", name=re.compile(r"Decision for .*cockpit-model.*Retrain"))).to_be_visible()
    expect(page.get_by_role("cell", name="already_handled")).to_be_visible()
    page.screenshot(path=str(shots / "decision-artifact.png"))

    page.go_back()
    page.get_by_text("Artifacts", exact=True).click()
    page.get_by_text("drift-cockpit-model", exact=True).first.click()
    expect(page.get_by_text(re.compile(r"vs threshold 0\.300")).first).to_be_visible()
    for column in ("feature", "contribution", "PSI", "reference", "current", "histogram"):
        expect(page.get_by_role("columnheader", name=column, exact=True)).to_be_visible()
    expect(page.get_by_role("row").nth(1)).to_contain_text("utilization")  # the top feature of the demo's drift
    image = page.get_by_role("img", name="histogram 1")  # the data: PNG, kept and drawn by the UI's markdown
    expect(image).to_be_visible()
    assert image.evaluate("img => img.complete && img.naturalWidth") == 120  # decoded, not a broken image
    page.screenshot(path=str(shots / "drift-artifact.png"))

    page.go_back()
    page.get_by_text("Artifacts", exact=True).click()
    page.get_by_text("model-cockpit-model", exact=True).first.click()
    folder = page.get_by_text(re.compile(r"cockpit-model v1 in the local registry: /.*/cockpit-model/1$"))
    expect(folder).to_be_visible()  # the folder as text: a file:// link would open nothing
    expect(page.get_by_role("link", name=re.compile("local registry"))).to_have_count(0)
    page.screenshot(path=str(shots / "model-artifact.png"))

    page.goto(f"{stack.ui_url}/events?resource=prefect.flow-run.{cockpit_run['id']}")
    expect(page.get_by_text("drift-retrain.model.registered", exact=True).first).to_be_visible()
    expect(page.get_by_text("drift-retrain.decision.made", exact=True).first).to_be_visible()
    expect(page.get_by_text("drift-retrain.model.cockpit-model", exact=True).first).to_be_visible()
    page.get_by_text("drift-retrain.model.registered", exact=True).first.evaluate("e => e.scrollIntoView({block: 'center'})")
    page.screenshot(path=str(shots / "events.png"))

    # last (it may leave V2 as this profile's UI): the V2 UI draws the histogram too, through its own sanitizer
    drift_id = api.latest_artifact(cockpit_run["id"], "drift-cockpit-model")["id"]
    page.goto(f"{stack.ui_url}/v2/artifacts/artifact/{drift_id}")
    v2_image = page.get_by_role("img", name="histogram 1")
    expect(v2_image).to_be_visible()
    assert v2_image.evaluate("img => img.complete && img.naturalWidth") == 120
    page.wait_for_timeout(1000)  # only for the picture: the lazy renderer may still be swapping in
    v2_image.screenshot(path=str(tmp_path / "histogram-v2.png"))  # a check by eye, not a docs picture
    page.screenshot(path=str(tmp_path / "drift-artifact-v2.png"))


def test_a_retrain_by_hand_is_started_from_the_run_form(page, shots, stack, api) -> None:
    """Pick a target in the form's drop-down, submit: a manual run, named and tagged like any other."""
    deployment_id = api.http.get("/deployments/name/drift-to-retrain/drift-to-retrain").json()["id"]
    page.goto(f"{stack.ui_url}/deployments/deployment/{deployment_id}/run")
    for text in (
        "the webhook receiver and the sweep fill this in",
        "Retrain by hand: the configured target (model) to retrain",
        "Retrain by hand: start of the data window (UTC)",
        "Retrain even below the drift threshold",
    ):
        expect(page.get_by_text(text, exact=False).first).to_be_visible()

    target = page.locator(".schema-form-property").filter(has_text="target (Optional)")
    choice = target.locator(".p-select-button__control")
    expect(choice).to_be_visible()  # at once: no "Property is type None" behind a "str" toggle to click first
    expect(target.get_by_text("Property is type None")).to_have_count(0)
    expect(choice).to_have_text("credit-default")  # the first configured target, preselected
    choice.click()
    choice.press("ArrowDown")  # opens the drop-down of the configured targets
    options = page.get_by_role("option")
    expect(options.filter(has_text="cockpit")).to_have_count(1)
    options.filter(has_text="empty-window").click()
    expect(choice).to_have_text("empty-window")
    page.screenshot(path=str(shots / "run-form.png"), full_page=True)
    before = {r["id"] for r in api.flow_runs()}
    page.get_by_role("button", name="Submit").click()

    page.wait_for_url(re.compile(rf"/deployments/deployment/{deployment_id}"))  # the UI shows the deployment's runs
    deadline = time.monotonic() + 120
    while not (new := [r for r in api.flow_runs() if r["id"] not in before]) and time.monotonic() < deadline:
        time.sleep(0.5)
    (created,) = new
    assert created["parameters"]["target"] == "empty-window"
    flow_run = api.wait(created["id"])
    assert flow_run["state"]["type"] == "COMPLETED", flow_run["state"]
    assert re.fullmatch(r"empty-model-manual-\d{4}-\d\d-\d\d\.\.[0-9-]+-[0-9a-f]{8}", flow_run["name"]), flow_run["name"]
    assert {"via:manual", "kind:manual", "target:empty-window", "model:empty-model"} <= set(flow_run["tags"])
    decision = api.latest_artifact(flow_run["id"], "decision-empty-model")
    assert "retrain requested by hand" in decision["data"]
    assert "0 rows copied < minimum" in decision["description"]  # nothing landed for this target: skipped


def test_the_run_list_tells_a_retrain_from_a_skip(page, shots, stack, api, cockpit_run) -> None:
    """The Runs list filters by the decision: tag (Prefect's list item shows a run's state name and some of its
    tags, never its state message), and the run's page says the outcome as its State Message."""
    again = api.wait(api.run_deployment("drift-to-retrain/drift-to-retrain", {"signal": cockpit_run["parameters"]["signal"]}))
    assert again["name"] == cockpit_run["name"]  # one signal, one name: the tag tells the two runs apart
    assert again["state"]["message"].startswith("skipped: already handled: registered as cockpit-model v1")
    for tag, shown, hidden in (("decision:skip", again, cockpit_run), ("decision:retrain", cockpit_run, again)):
        page.goto(f"{stack.ui_url}/runs?tab=flow-runs")
        page.locator("input[placeholder='Search by flow run name']:visible").first.fill(cockpit_run["name"])
        tags = page.locator(".p-select-button__control").filter(has_text="All tags").first  # the Tags filter
        tags.click()
        tags.press("ArrowDown")  # opens its drop-down, with a search box
        page.locator(".p-combobox__text-input input:visible, input.p-combobox__text-input:visible").first.fill(tag)
        page.get_by_role("option", name=tag, exact=True).first.click()
        page.keyboard.press("Escape")
        runs = page.locator(".flow-run-list-item").filter(has_text=cockpit_run["name"])
        expect(runs.locator(f"a[href*='{shown['id']}']").first).to_be_visible()
        expect(runs.locator(f"a[href*='{hidden['id']}']")).to_have_count(0)
        if tag == "decision:skip":
            page.screenshot(path=str(shots / "run-list.png"))
    for run in (cockpit_run, again):  # the run page's Details tab: the outcome as the State Message
        page.goto(stack.flow_run_url(run["id"]))
        page.get_by_role("tab", name="Details").or_(page.get_by_text("Details", exact=True)).first.click()
        expect(page.get_by_text("State Message", exact=True).first).to_be_visible()
        expect(page.get_by_text(run["state"]["message"], exact=True).first).to_be_visible()
    assert cockpit_run["state"]["message"] == "retrained → cockpit-model v1"
