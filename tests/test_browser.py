"""The Prefect UI of the local stack in a real headless Chromium, clicked as a user clicks it.

What a user sees: the deployments, a Quick run of train with its task runs (the flow's phases)
and artifacts, the samples after 60 steps (not flat), the ingest table's frame sizes, the
Custom run forms with every field described, and a failed train run retried from its page.

Debian's chromium (/usr/bin/chromium; .ci/run installs it) driven by Playwright from PyPI;
Playwright's own browser downloads are never used. Every request that would leave
127.0.0.1 is aborted (the UI's bundled analytics SDK asks amplitude.com for its config on
load, even with analytics off). Screenshots go to $SYNTHWAVE_SCREENSHOTS, else
tests/output/screenshots.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.is_file():
    pytest.skip(f"{CHROMIUM} not found: apt-get install chromium (.ci/run does)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed: pip install -e '.[test]'")

pytest.register_assert_rewrite("tests.stack_fixture")  # before the import: its asserts explain failures
from prefect.client.orchestration import get_client  # noqa: E402
from prefect.client.schemas.actions import DeploymentUpdate  # noqa: E402
from prefect.client.schemas.filters import (  # noqa: E402
    DeploymentFilter, DeploymentFilterId, FlowRunFilter, FlowRunFilterId,
)
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError  # noqa: E402

from tests.loopback import SAMPLE_VIDEOS  # noqa: E402
from pydantic import BaseModel  # noqa: E402

from synthwave.settings import IngestSettings, TrainSettings  # noqa: E402
from tests.stack_fixture import (  # noqa: E402
    ingest_settings, run_logs, tiny_train_settings, wait_for_run,
)

if not (SAMPLE_VIDEOS / "milk.mkv").is_file():  # before the session's stack starts for nothing
    pytest.skip(f"sample videos not found at {SAMPLE_VIDEOS} (shared/ beside the repo)", allow_module_level=True)

pytest_plugins = ["tests.stack_fixture"]
pytestmark = pytest.mark.slow

SCREENSHOTS = Path(os.environ.get("SYNTHWAVE_SCREENSHOTS") or Path(__file__).parent / "output" / "screenshots")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",  # no DNS beyond loopback
]
QUICK_RUN_MESSAGE = "Run from the Prefect UI with defaults"  # the state message the UI's Quick run sends
PHASES = ("stage-data", "train", "render-walk", "publish")  # flows/train.py's tasks, in order
# Grey-level std within the tiles of a samples grid. Measured after 60 steps on the sample clips
# at 32x56: 47-49 with or without EMA, mixed precision on or off; a flat grey grid (BatchNorm's
# undebiased statistics) measured 2. 15 is far from both.
NOT_FLAT = 15.0


@pytest.fixture
def page(tmp_path, request):
    """A fresh Chromium profile; requests beyond 127.0.0.1 are aborted and recorded."""
    blocked: list[str] = []

    def loopback_only(route) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            tmp_path / "chromium-profile", executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 900},
        )
        context.set_default_timeout(60_000)  # a loaded 2-core machine
        context.route("**/*", loopback_only)
        page = context.pages[0] if context.pages else context.new_page()
        failed_before = request.session.testsfailed
        yield page
        if request.session.testsfailed > failed_before:
            shot(page, "failure", full_page=True)
        if blocked:
            print(f"\naborted {len(blocked)} requests beyond 127.0.0.1: {sorted(set(blocked))}")
        context.close()


def shot(page, name: str, full_page: bool = False) -> None:
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=path, full_page=full_page)
    print(f"screenshot: {path}")


def wait_for_image(page, description: str) -> tuple[int, int]:
    """Open the flow run's image artifact with this description; wait until the browser decoded it."""
    page.get_by_role("link").filter(has_text=description).first.click()
    page.wait_for_url(re.compile(r".*/artifacts/artifact/[0-9a-f-]{36}"))
    image = page.locator('img[alt="artifact-image"]')
    image.wait_for()
    image.evaluate("img => img.decode().catch(() => null)")
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    return tuple(image.evaluate("img => [img.naturalWidth, img.naturalHeight]"))


def deployment_runs(deployment_id) -> set[str]:
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))
    return {str(run.id) for run in runs}


def created_run(deployment_id, before: set[str], timeout_s: float = 120) -> str:
    """The id of the one flow run of the deployment created since `before`, once the server has it."""
    deadline = time.monotonic() + timeout_s
    while not (new := deployment_runs(deployment_id) - before) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert len(new) == 1, f"expected one new flow run of deployment {deployment_id}, found {len(new)}"
    return new.pop()


def test_quick_run_train_from_the_ui_and_see_its_artifacts(stack_api, stack_dataset, page, tmp_path):
    stack, started = stack_api, time.monotonic()
    run_dir = tmp_path / "ui-run"
    # Quick run uses the deployment's saved parameters: point them at a tiny run (what the
    # deployment page's Edit does; prefect.yaml's defaults train on ./data for 2000 steps).
    with get_client(sync_client=True) as client:
        train = client.read_deployment_by_name("train/train")
        client.update_deployment(
            train.id, DeploymentUpdate(parameters={"settings": tiny_train_settings(stack_dataset, run_dir)})
        )

    # The UI the user opens: / redirects to the default (v2) UI; Deployments lists all three.
    page.goto(stack.ui_url)
    page.get_by_role("link", name="Deployments", exact=True).click()
    for name in ("ingest", "train", "pipeline"):
        page.get_by_role("link", name=name, exact=True).first.wait_for()
    shot(page, "01-deployments")

    # train > Run > Quick run, then the toast's "View run".
    page.get_by_role("link", name="train", exact=True).first.click()
    page.wait_for_url(re.compile(rf".*/deployments/deployment/{train.id}.*"))
    before = deployment_runs(train.id)
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Quick run").click()
    flow_run_id = created_run(train.id, before)  # the server has the run the button asked for
    with get_client(sync_client=True) as client:
        states = client.read_flow_run_states(flow_run_id)
    assert QUICK_RUN_MESSAGE in [state.message for state in states], [(s.name, s.message) for s in states]
    try:  # the toast's link; it times out after a few seconds, so a slow machine may miss it
        page.get_by_text("View run").click(timeout=10_000)
    except PlaywrightTimeoutError:
        page.goto(page.url.split("/deployments/")[0] + f"/runs/flow-run/{flow_run_id}")
    page.wait_for_url(re.compile(rf".*/runs/flow-run/{flow_run_id}.*"))
    final = wait_for_run(stack, flow_run_id)
    assert final.state.is_completed(), f"train ended {final.state.name}\n{run_logs(stack, flow_run_id)}"

    # The flow run page: Completed, and the Artifacts tab lists every kind the flow creates.
    page.reload()
    page.get_by_text("Completed", exact=True).first.wait_for()
    page.locator(f"a[href*='/deployments/deployment/{train.id}']").first.wait_for()
    page.get_by_text(re.compile(r"Finished in state Completed")).first.wait_for()  # the Logs tab
    shot(page, "02-flow-run")
    # The run graph (a canvas) has the phases' task runs; the Task Runs tab lists them by name.
    assert not page.get_by_text("did not generate any task or subflow runs").count()
    page.get_by_role("tab", name="Task Runs").click()
    for phase in PHASES:
        page.get_by_role("link", name=re.compile(rf"^{phase}-")).first.wait_for()
    shot(page, "02b-train-run-task-runs")
    page.get_by_role("tab", name="Artifacts").click()
    cards = page.get_by_role("link").filter(has_text=re.compile(r"^(PROGRESS|TABLE|MARKDOWN|IMAGE)"))
    cards.first.wait_for()
    kinds = {text.split()[0] for text in cards.all_inner_texts()}
    assert kinds == {"PROGRESS", "TABLE", "MARKDOWN", "IMAGE"}, kinds
    page.get_by_role("link").filter(has_text="Samples from the fixed noise at step 4").first.wait_for()
    shot(page, "03-flow-run-artifacts", full_page=True)

    # The image artifacts load in the browser (data: URLs: no file server needed).
    width, height = wait_for_image(page, "Samples from the fixed noise at step 4")
    assert width > 0 and height > 0
    shot(page, "04-artifact-samples")
    page.go_back()
    width, height = wait_for_image(page, "Losses up to step 4")
    assert width > 0 and height > 0
    shot(page, "05-artifact-loss-plot")
    print(f"\nbrowser test wall time (stack already up): {time.monotonic() - started:.1f} s")


def ui_base(page, stack) -> str:
    """The default UI's base URL, as the landing page redirects to it (/v2; /deployments/... alone is v1's)."""
    page.goto(stack.ui_url)
    page.get_by_role("link", name="Deployments", exact=True).wait_for()
    return re.sub(r"/dashboard.*$", "", page.url).rstrip("/")


def tile_spread(pixels: np.ndarray, frame: tuple[int, int], pad: int = 2, margin: int = 2) -> float:
    """Mean grey-level std within the tiles of a grid (gan/images.py's layout), borders left out."""
    grey = pixels[..., :3].astype(np.float32).mean(axis=-1)
    height, width = frame
    rows, columns = (grey.shape[0] - pad) // (height + pad), (grey.shape[1] - pad) // (width + pad)
    tiles = [grey[pad + r * (height + pad) + margin : pad + r * (height + pad) + height - margin,
                  pad + c * (width + pad) + margin : pad + c * (width + pad) + width - margin]
             for r in range(rows) for c in range(columns)]  # fmt: skip
    return float(np.mean([tile.std() for tile in tiles]))


def decoded_pixels(page) -> np.ndarray:
    """The pixels of the artifact page's image as the browser decoded them (RGBA)."""
    image = page.locator('img[alt="artifact-image"]')
    width, height, data = image.evaluate(
        """img => { const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
                    const g = c.getContext('2d'); g.drawImage(img, 0, 0);
                    return [c.width, c.height, Array.from(g.getImageData(0, 0, c.width, c.height).data)]; }"""
    )
    return np.asarray(data, np.uint8).reshape(height, width, 4)


def test_samples_after_60_steps_are_not_flat(stack_api, stack_dataset, page, tmp_path):
    stack = stack_api
    settings = {**tiny_train_settings(stack_dataset, tmp_path / "sixty"), "steps": 60, "sample_every": 30,
                "checkpoint_every": 60, "walk_seconds": 0}  # fmt: skip
    with get_client(sync_client=True) as client:  # not run_deployment: Playwright's loop makes it a coroutine
        train = client.read_deployment_by_name("train/train")
        run = client.create_flow_run_from_deployment(train.id, parameters={"settings": settings})
    final = wait_for_run(stack, run.id)
    assert final.state.is_completed(), f"train ended {final.state.name}\n{run_logs(stack, run.id)}"

    # The Logs tab has the training task's progress lines (flows/progress.py).
    base = ui_base(page, stack)
    page.goto(f"{base}/runs/flow-run/{run.id}")
    line = page.get_by_text(re.compile(r"^step 60/60: g_loss .* images/s")).first
    line.wait_for()
    line.scroll_into_view_if_needed()
    shot(page, "06a-train-run-log")

    page.get_by_role("tab", name="Artifacts").click()
    wait_for_image(page, "Samples from the fixed noise at step 60")
    spread = tile_spread(decoded_pixels(page), frame=(32, 56))
    shot(page, "06b-samples-after-60-steps")
    print(f"\nsamples after 60 steps: grey-level std {spread:.2f} within tiles")
    assert spread > NOT_FLAT, f"the samples after 60 steps are flat: grey-level std {spread:.1f} within tiles"

    # The artifact's key page: the latest grid's description over its versions, one a grid (steps 0, 30, 60).
    page.get_by_role("link", name=re.compile(r"-samples$")).first.click()
    page.wait_for_url(re.compile(r".*/artifacts/key/.*-samples"))
    page.get_by_text("Samples from the fixed noise at step 60", exact=True).first.wait_for()
    sync_api.expect(page.get_by_text("Task run:")).to_have_count(3)
    shot(page, "06c-samples-versions", full_page=True)


def test_ingest_table_shows_each_videos_size(stack_api, stack_dataset, page):
    stack = stack_api
    with get_client(sync_client=True) as client:
        ingest = client.read_deployment_by_name("ingest/ingest")
        runs = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[ingest.id])))
    (run,) = [r for r in runs if r.parameters["settings"]["data_dir"] == str(stack_dataset)]
    height, width = ingest_settings(stack_dataset)["frames"]["size"]

    page.goto(f"{ui_base(page, stack)}/runs/flow-run/{run.id}")
    page.get_by_text("Completed", exact=True).first.wait_for()
    page.get_by_role("tab", name="Artifacts").click()
    page.get_by_role("link").filter(has_text=re.compile(r"^TABLE")).first.click()
    page.wait_for_url(re.compile(r".*/artifacts/artifact/[0-9a-f-]{36}"))
    rows = page.locator("table tbody tr")
    rows.first.wait_for()
    shot(page, "07-ingest-table", full_page=True)
    texts = rows.all_inner_texts()
    assert len(texts) == len(run.parameters["sources"]), texts
    assert all(re.search(rf"\b{height}\s*[x×]\s*{width}\b", text) for text in texts), texts


def descriptions(model: type[BaseModel]) -> dict[str, str]:
    """Every field's description, nested settings' too (the form shows them expanded; not optional ones)."""
    found = {}
    for name, field in model.model_fields.items():
        if field.description:
            found[name] = field.description
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            found |= {f"{name}.{inner}": text for inner, text in descriptions(field.annotation).items()}
    return found


@pytest.mark.parametrize("name, settings, parameter", [
    ("ingest", IngestSettings, "Videos to ingest, one per entry"), ("train", TrainSettings, "The dataset to train on"),
])  # fmt: skip
def test_custom_run_form_describes_the_fields(stack_api, page, name, settings, parameter):
    stack = stack_api
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(f"{name}/{name}")
    page.goto(f"{ui_base(page, stack)}/deployments/deployment/{deployment.id}")
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Custom run").click()
    page.wait_for_url(re.compile(r".*/run.*"))
    page.get_by_text(parameter, exact=False).first.wait_for()  # the flow's Args: docstring
    shot(page, f"08-custom-run-form-{name}", full_page=True)
    missing = [field for field, text in descriptions(settings).items() if not page.get_by_text(text, exact=False).count()]
    assert not missing, f"fields whose description the {name} form does not show: {missing}"


def test_retry_a_failed_train_run_from_the_ui(stack_api, stack_dataset, page, tmp_path):
    """A train run that failed (its data not there yet), retried with the run page's Retry once the
    data is there: the same flow run runs every phase again and completes."""
    stack, data = stack_api, tmp_path / "data"
    settings = {**tiny_train_settings(data, tmp_path / "run"), "walk_seconds": 0}
    with get_client(sync_client=True) as client:
        train = client.read_deployment_by_name("train/train")
        run = client.create_flow_run_from_deployment(train.id, parameters={"settings": settings})
    failed = wait_for_run(stack, run.id)
    assert failed.state.is_failed(), f"train ended {failed.state.name}\n{run_logs(stack, run.id)}"
    shutil.copytree(stack_dataset, data)

    page.goto(f"{ui_base(page, stack)}/runs/flow-run/{run.id}")
    page.get_by_text("Failed", exact=True).first.wait_for()
    page.get_by_role("button", name="Open menu").click()  # the run page's ⋮ menu
    page.get_by_role("menuitem", name="Retry", exact=True).click()
    page.get_by_text("Retry Flow Run").wait_for()
    shot(page, "09-train-run-retry-dialog")
    page.get_by_role("button", name="Retry", exact=True).click()
    with get_client(sync_client=True) as client:
        deadline = time.monotonic() + 60
        while client.read_flow_run(run.id).state.is_failed() and time.monotonic() < deadline:
            time.sleep(0.5)
    final = wait_for_run(stack, run.id)
    assert final.state.is_completed(), f"the retried run ended {final.state.name}\n{run_logs(stack, run.id)}"

    page.reload()
    page.get_by_role("tab", name="Task Runs").click()
    for phase in ("stage-data", "train", "publish"):
        page.get_by_role("link", name=re.compile(rf"^{phase}-")).first.wait_for()
    shot(page, "10-train-run-retried-task-runs")
    with get_client(sync_client=True) as client:
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
    phases = [(task.name.rsplit("-", 1)[0], task.state.type.value) for task in sorted(tasks, key=lambda t: t.start_time)]
    assert phases == [("stage-data", "FAILED"), ("stage-data", "COMPLETED"), ("train", "COMPLETED"),
                      ("publish", "COMPLETED")], phases  # fmt: skip
