"""The trace explorer: page contents, and the pages in a real headless Chromium (Debian's
``chromium`` and ``chromium-driver`` through selenium).

The browser tests skip with a reason where no browser is installed, except under CI (``CI`` set),
where they must run. Locally: ``apt-get install chromium chromium-driver`` then
``pytest tests/test_explorer.py`` (the demo-run check: ``pytest -m slow tests/test_explorer.py``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from anchorflow.explorer.pages import MEASURES, TracePage, head_curves, matrix_json
from anchorflow.explorer.render import IndexEntry, render_index, render_trace_page, write_explorer

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


def synthetic_page(n: int, seed: int = 0) -> TracePage:
    """A trace page of ``n`` sentences with every measure (some values missing), a suppression
    matrix and five head curves."""
    rng = np.random.default_rng(seed)
    categories = ["plan_generation", "active_computation", "uncertainty_management"]
    measures = {}
    for key, _ in MEASURES:
        values = [float(v) for v in rng.gamma(1.0, size=n)]
        missing = rng.choice(n, size=max(1, n // 10), replace=False)
        measures[key] = [None if i in missing else round(v, 4) for i, v in enumerate(values)]
    vertical = rng.gamma(1.0, size=(3, 4, n))
    matrix = np.log(rng.gamma(1.0, size=(n, n)))
    matrix[np.triu_indices(n)] = np.nan
    return TracePage(
        model="tiny",
        trace="101_correct",
        problem="What is 2 + 2? <b>not markup</b>",
        correct=True,
        n_tokens=20 * n,
        sentences=[f"Sentence {i} says something about step {i}." for i in range(n)],
        chunk_idx=list(range(n)),
        categories=[categories[i % 3] for i in range(n)],
        depends_on=[[i - 1] if i else [] for i in range(n)],
        measures=measures,
        matrix=matrix_json(matrix),
        curves=head_curves(vertical, [(1, 0), (2, 3), (0, 1), (2, 2), (1, 1)]),
    )


def page_data(text: str) -> dict:
    found = re.search(r'<script id="page-data" type="application/json">(.*?)</script>', text, re.S)
    return json.loads(found.group(1))


def test_page_embeds_every_sentence_and_keeps_missing_values_missing() -> None:
    page = synthetic_page(30)
    text = render_trace_page(page)
    data = page_data(text)
    assert len(data["sentences"]) == 30
    assert [m["key"] for m in data["measures"]] == [key for key, _ in MEASURES]
    receiver = data["measures"][0]["values"]
    assert None in receiver and receiver == page.measures["receiver_score"]
    assert data["matrix"][0][0] is None  # NaN stays missing, never 0
    assert "&lt;b&gt;not markup&lt;/b&gt;" in text and "<b>not markup</b>" not in text
    assert "http://" not in text and "https://" not in text  # nothing is fetched


def test_index_lists_traces_heads_and_links(tmp_path: Path) -> None:
    page = synthetic_page(12)
    index = render_index(
        "demo",
        [IndexEntry(page, "traces/tiny/101_correct.html")],
        {"tiny": [{"layer": 2, "head": 1, "mean_kurtosis": 5.6412}]},
        [("figure4 (tiny)", "../figures/tiny/figure4.png")],
    )
    assert 'href="traces/tiny/101_correct.html"' in index and "5.641" in index
    assert 'href="../figures/tiny/figure4.png"' in index
    written = write_explorer(tmp_path, "demo", [page], {"tiny": []}, [])
    assert [path.relative_to(tmp_path).as_posix() for path in written] == [
        "index.html",
        "traces/tiny/101_correct.html",
    ]


# --- in a real browser ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    if not (CHROMIUM and CHROMEDRIVER):
        message = "no chromium/chromedriver (apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}: CI must run the browser tests")
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", "--disable-quic", "--window-size=1280,900",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
    ):  # fmt: skip
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def check_trace_page(driver, path: Path, n_sentences: int, screenshot: Path) -> None:
    """The checks CI runs on a trace page."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver.get_log("browser")  # drop earlier pages' entries
    driver.get(path.as_uri())
    assert driver.find_element(By.TAG_NAME, "body").get_attribute("data-rendered")
    sentences = driver.find_elements(By.CSS_SELECTOR, "#sentences .sentence")
    assert len(sentences) == n_sentences
    measure = Select(driver.find_element(By.ID, "measure"))
    options = [option.get_attribute("value") for option in measure.options]
    assert len(options) >= 2

    def shading() -> list[str]:
        return [span.value_of_css_property("background-color") for span in sentences]

    before = shading()
    measure.select_by_value(options[1])
    assert shading() != before, "choosing another measure did not change the shading"
    tooltip = driver.find_element(By.ID, "tooltip")
    ActionChains(driver).move_to_element(sentences[min(5, n_sentences - 1)]).perform()
    assert tooltip.is_displayed()
    assert "depends on" in tooltip.text and "receiver-head score" in tooltip.text
    Select(driver.find_element(By.ID, "sort")).select_by_value(options[0])
    driver.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 10_000
    errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, errors


def test_a_trace_page_works_in_chromium(browser, tmp_path: Path) -> None:
    page = synthetic_page(40)
    written = write_explorer(tmp_path, "test", [page], {"tiny": []}, [])
    check_trace_page(browser, written[1], 40, tmp_path / "trace.png")


def test_a_300_sentence_page_renders_in_under_two_seconds(browser, tmp_path: Path) -> None:
    """Measured from navigation start to the end of the page script (``data-rendered``)."""
    page = synthetic_page(300)
    written = write_explorer(tmp_path, "test", [page], {"tiny": []}, [])
    browser.get(written[1].as_uri())
    rendered_ms = float(browser.find_element("tag name", "body").get_attribute("data-rendered"))
    assert rendered_ms < 2000, f"rendered after {rendered_ms:.0f} ms"
    assert len(browser.find_elements("css selector", "#sentences .sentence")) == 300


@pytest.mark.slow
def test_the_demo_runs_explorer_works_offline_in_chromium(browser, demo_baseline, tmp_path) -> None:
    """The demo run's own pages: the index links every trace page, each of which passes the
    checks; file:// only, so nothing could be fetched."""
    from selenium.webdriver.common.by import By

    explorer = demo_baseline.results / "explorer"
    browser.get((explorer / "index.html").as_uri())
    links = [a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, "td a")]
    assert links
    for href in links[:3]:
        page = Path(href.removeprefix("file://"))
        model, trace = page.parent.name, page.stem
        sentences = json.loads(
            (demo_baseline.results / "sentences" / "demo-r1-distill" / f"{trace}.json").read_text()
        )["sentences"]
        check_trace_page(browser, page, len(sentences), tmp_path / f"{model}-{trace}.png")
