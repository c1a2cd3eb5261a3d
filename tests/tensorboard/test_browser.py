"""End to end: real training runs, a real TensorBoard, Debian's headless Chromium.

Trains a small MNIST MLP with `SynapticScalingCallback(log_dir=...)` and a
BatchNorm twin logged by `HomeostasisLogger`, opens the Homeostasis tab and
checks that every view draws both runs for every layer. Screenshots of the
tab and of each view go to `test-artifacts/`; with
`KH_UPDATE_DOCS_IMAGES=1` they are also copied to `docs/images/` for the
README (so a plain test run never rewrites tracked files).
"""

import os
import pathlib
import shutil
import tempfile
import time

import pytest

from keras_homeostasis import SynapticScalingCallback
from keras_homeostasis.tensorboard import HomeostasisLogger

ROOT = pathlib.Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
DOCS_IMAGES = ROOT / "docs" / "images"
CHROMIUM = pathlib.Path("/usr/bin/chromium")
CHROMEDRIVER = pathlib.Path("/usr/bin/chromedriver")
UNITS = {"hidden_0": 64, "hidden_1": 32}
RUNS = ("batchnorm", "scaling")
VIEWS = ("heatmap", "sorted", "factors", "firing", "stats")

# What the page drew, read from the DOM (data attributes and canvas pixels).
INSPECT = """
const all = (s) => [...document.querySelectorAll(s)];
const where = (e) => ({layer: e.closest('.card').dataset.layer, run: e.dataset.run});
const painted = (canvas) => {
  const data = canvas.getContext('2d').getImageData(
      0, 0, canvas.width, canvas.height).data;
  let opaque = 0, coloured = 0;
  for (let k = 0; k < data.length; k += 4) {
    if (data[k + 3] === 255) opaque++;
    if (data[k] < 250 || data[k + 1] < 250 || data[k + 2] < 250) coloured++;
  }
  return {opaque, coloured, pixels: data.length / 4};
};
const ys = (path) => [...path.getAttribute('d').matchAll(/[ML][-\\d.]+,([-\\d.]+)/g)]
    .map((m) => Number(m[1]));
return {
  status: document.body.dataset.status,
  errors: all('[data-error]').map((e) => e.textContent),
  heatmaps: all('[data-view=heatmap] canvas.heatmap').map((c) => ({
    ...where(c), rows: +c.dataset.rows, cols: +c.dataset.cols,
    units: +c.dataset.units, ...painted(c)})),
  curves: all('[data-view=sorted] path[data-role=activity]').map((p) => ({
    ...where(p), points: ys(p).length, units: +p.dataset.units})),
  targets: all('[data-view=sorted] path[data-role=target]').map(where),
  medians: all('[data-view=factors] path[data-role=median]').map((p) => ({
    ...where(p), points: ys(p).length, distinct: new Set(ys(p)).size})),
  bands: all('[data-view=factors] path.band').map(where),
  stats: all('[data-view=stats] path.line').map((p) => ({
    ...where(p), stat: p.dataset.role, points: ys(p).length})),
  firing: all('[data-view=firing] path[data-role=median]').map((p) => ({
    ...where(p), stat: p.closest('[data-stat]').dataset.stat,
    points: ys(p).length})),
  firingBands: all('[data-view=firing] path.band').map(where),
  unmeasured: all('[data-view=firing] [data-unmeasured]').map((e) => ({
    layer: e.closest('.card').dataset.layer,
    stat: e.closest('[data-stat]').dataset.stat, runs: e.dataset.unmeasured})),
};
"""


def train_runs(logdir, x, y, make_mlp):
    """Two short MNIST runs; returns the logged steps of each run."""
    scaled = make_mlp(units=tuple(UNITS.values()))
    scaling = SynapticScalingCallback(log_dir=logdir / "scaling", log_freq=4)
    scaled.fit(x, y, batch_size=32, epochs=3, verbose=0, callbacks=[scaling])
    plain = make_mlp(batchnorm=True, units=tuple(UNITS.values()))
    logger = HomeostasisLogger(logdir / "batchnorm", update_freq=4, probe_data=x[:256])
    plain.fit(x, y, batch_size=32, epochs=3, verbose=0, callbacks=[logger])
    # 16 steps per epoch: every 4 steps; the BatchNorm run also at step 0.
    return {"scaling": 12, "batchnorm": 13}


def chromium_driver(width, height):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-')}",
        f"--window-size={width},{height}",
    ]:
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


def wait_for(condition, what, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def wait_for_page(driver):
    """The dashboard's final status: "ready", "empty" or "error"."""

    def status():
        value = driver.execute_script("return document.body.dataset.status")
        return value if value in ("ready", "empty", "error") else None

    return wait_for(status, "the dashboard to load")


def check_views(drawn, logged):
    assert drawn["errors"] == []
    pairs = {(layer, run) for layer in UNITS for run in RUNS}
    heatmaps = {(h["layer"], h["run"]): h for h in drawn["heatmaps"]}
    assert set(heatmaps) == pairs
    for (layer, run), h in heatmaps.items():
        assert h["units"] == h["rows"] == UNITS[layer]
        assert h["cols"] == logged[run]
        assert h["opaque"] == h["pixels"] and h["coloured"] > h["pixels"] // 4
    curves = {(c["layer"], c["run"]): c for c in drawn["curves"]}
    assert set(curves) == pairs
    assert all(c["points"] == c["units"] == UNITS[k[0]] for k, c in curves.items())
    assert sorted((t["layer"], t["run"]) for t in drawn["targets"]) == sorted(pairs)
    medians = {(m["layer"], m["run"]): m for m in drawn["medians"]}
    assert set(medians) == pairs
    for (_, run), m in medians.items():
        assert m["points"] == logged[run]
        # BatchNorm units are never scaled: a flat median at factor 1.
        assert (m["distinct"] == 1) == (run == "batchnorm")
    assert len(drawn["bands"]) == 2 * len(pairs)
    stats = {(s["layer"], s["run"], s["stat"]): s["points"] for s in drawn["stats"]}
    for statistic in ("entropy", "cv", "dead_fraction"):
        for layer, run in pairs:
            assert stats[(layer, run, statistic)] == logged[run]
    check_firing(drawn, pairs, logged)


def check_firing(drawn, pairs, logged):
    """Firing rates for both runs; spreads for the scaled run only (the
    BatchNorm twin's Dense layers have a built-in ReLU: no pre-activation)."""
    medians = {(f["layer"], f["run"], f["stat"]): f["points"] for f in drawn["firing"]}
    expected = {(layer, run, "firing_rate") for layer, run in pairs}
    expected |= {(layer, "scaling", "spread") for layer in UNITS}
    assert set(medians) == expected
    assert all(medians[key] == logged[key[1]] for key in expected)
    assert len(drawn["firingBands"]) == 2 * len(expected)
    assert sorted((u["layer"], u["stat"], u["runs"]) for u in drawn["unmeasured"]) == [
        (layer, "spread", "batchnorm") for layer in sorted(UNITS)
    ]


def save_png(element_or_driver, name):
    """Saves a screenshot to test-artifacts/ (and docs/images/ when asked)."""
    from PIL import Image

    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    if hasattr(element_or_driver, "save_screenshot"):
        element_or_driver.save_screenshot(str(path))
    else:
        element_or_driver.screenshot(str(path))
    Image.open(path).convert("RGB").save(path, optimize=True)
    if os.environ.get("KH_UPDATE_DOCS_IMAGES") == "1":
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, DOCS_IMAGES / name)
    return path


@pytest.mark.slow
def test_the_dashboard_draws_every_view(
    tmp_path, mnist_slice, make_mlp, tensorboard_server
):
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("Debian chromium and chromium-driver are not installed")
    x, y = mnist_slice
    logged = train_runs(tmp_path / "runs", x[:512], y[:512], make_mlp)
    server = tensorboard_server(tmp_path / "runs")
    server.wait_for_runs(RUNS)

    driver = chromium_driver(1200, 900)
    try:
        # TensorBoard's own page: the tab, and the plugin in its iframe.
        driver.get(server.url + "/#homeostasis")
        frame = wait_for(
            lambda: driver.find_elements(
                "css selector", "iframe[src*='plugin_entry.html?name=homeostasis']"
            ),
            "the plugin's iframe",
        )[0]
        tab = driver.execute_script(
            "return [...document.querySelectorAll('.mat-mdc-tab, .mat-tab-label, a')]"
            ".map((e) => e.textContent.trim()).filter((t) => /homeostasis/i.test(t))"
        )
        assert tab, "no Homeostasis tab in TensorBoard's tab bar"
        driver.switch_to.frame(frame)
        assert wait_for_page(driver) == "ready"
        check_views(driver.execute_script(INSPECT), logged)
        driver.switch_to.default_content()
        save_png(driver, "homeostasis_tab.png")

        # The plugin page alone, one screenshot per view.
        driver.set_window_size(1000, 1300)
        driver.get(server.url + "/data/plugin_entry.html?name=homeostasis")
        assert wait_for_page(driver) == "ready"
        check_views(driver.execute_script(INSPECT), logged)
        for view in VIEWS:
            section = driver.find_element("css selector", f"[data-view={view}]")
            driver.execute_script("arguments[0].scrollIntoView()", section)
            path = save_png(section, f"homeostasis_{view}.png")
            assert path.stat().st_size < 150_000
        check_controls(driver)
    finally:
        driver.quit()


def check_controls(driver):
    """The step slider moves the sorted curves; a run toggle hides a run."""
    driver.execute_script(
        "const s = document.querySelector('input[type=range]');"
        "s.value = 21; s.dispatchEvent(new Event('change'));"
    )

    def at_step_20():
        steps = driver.execute_script(
            "return [...document.querySelectorAll('[data-view=sorted] "
            "path[data-role=activity]')].map((p) => p.dataset.step)"
        )
        return len(steps) == 4 and set(steps) == {"20"}

    # The nearest logged step to 21 is 20 in both runs.
    wait_for(at_step_20, "the sorted curves at step 20")
    driver.execute_script(
        "const box = document.querySelector('input[data-run=batchnorm]');"
        "box.checked = false; box.dispatchEvent(new Event('change'));"
    )
    wait_for_page(driver)
    runs = driver.execute_script(
        "return [...document.querySelectorAll('canvas.heatmap')]"
        ".map((c) => c.dataset.run)"
    )
    assert runs == ["scaling", "scaling"]


def factor_labels(driver):
    """`{layer: y-axis label}` of the scale-factor charts (None for a chart
    still being drawn)."""
    return driver.execute_script(
        "return Object.fromEntries([...document.querySelectorAll("
        "'[data-view=factors] .card')].map((c) => [c.dataset.layer, "
        "c.querySelector('text.label.y')?.textContent ?? null]))"
    )


@pytest.mark.slow
def test_the_factor_chart_names_held_kernel_norms(
    tmp_path, run_writer, tensorboard_server
):
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("Debian chromium and chromium-driver are not installed")
    logs = tmp_path / "runs"
    run_writer(logs / "held", {"d": 4}, [1, 2], factor_kind="norm")
    run_writer(logs / "scaling", {"d": 4, "e": 3}, [1, 2])
    server = tensorboard_server(logs)
    server.wait_for_runs(["held", "scaling"])
    driver = chromium_driver(1000, 900)
    try:
        driver.get(server.url + "/data/plugin_entry.html?name=homeostasis")
        assert wait_for_page(driver) == "ready"
        # Both kinds on one chart say both; a chart of one kind says it.
        assert factor_labels(driver) == {
            "d": "kernel norm or scale factor",
            "e": "scale factor",
        }
        driver.execute_script(
            "const box = document.querySelector('input[data-run=scaling]');"
            "box.checked = false; box.dispatchEvent(new Event('change'));"
        )
        wait_for(
            lambda: factor_labels(driver) == {"d": "kernel norm"},
            "the held run's chart alone",
        )
    finally:
        driver.quit()
