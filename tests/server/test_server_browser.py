"""End to end in headless Chromium (Debian's chromium + chromium-driver, driven by Selenium): generate from the
studio page and play the result; rate one pair of a listening test.

Skips (with the reason) only where no browser is installed; ``bash scripts/setup.sh --dev`` installs one as
root. Set ``MUSICLM_STUDIO_SCREENSHOT=PATH`` to keep the studio screenshot (docs/studio.png is made so).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
from server_testing import make_app, one_torch_thread, wav_bytes  # noqa: F401 (autouse fixture)

from musiclm.server.listening import ListeningStore, read_prompts

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
DRIVERS = ("chromedriver", "/usr/lib/chromium/chromedriver", "/usr/bin/chromedriver")


def _find(env: str, names: tuple[str, ...]) -> str | None:
    if os.environ.get(env):
        return os.environ[env]
    for name in names:
        found = shutil.which(name) or (name if os.path.isabs(name) and os.access(name, os.X_OK) else None)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e .[dev])")
    from selenium.webdriver.chrome.service import Service

    binary, driver = _find("MUSICLM_CHROMIUM", BROWSERS), _find("MUSICLM_CHROMEDRIVER", DRIVERS)
    if binary is None or driver is None:
        pytest.skip("no headless Chromium: install the Debian packages chromium and chromium-driver "
                    "(bash scripts/setup.sh --dev does, as root)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--mute-audio",
                 "--autoplay-policy=no-user-gesture-required", "--window-size=1400,1000", "--no-first-run"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    session = webdriver.Chrome(service=Service(driver), options=options)
    session.set_page_load_timeout(60)
    try:
        yield session
    finally:
        session.quit()


@pytest.fixture(scope="module")
def live_server(tiny_musiclm, tmp_path_factory):
    """The studio on a free localhost port (uvicorn in a thread), with a two-system listening test."""
    import uvicorn

    root = tmp_path_factory.mktemp("studio")
    prompts = root / "prompts.tsv"
    prompts.write_text("p1\ta calm piano piece\np2\tfast punk drums\n")
    systems = {}
    for i, name in enumerate(("baseline", "candidate")):
        (root / name).mkdir()
        for j, key in enumerate(("p1", "p2")):
            (root / name / f"{key}.wav").write_bytes(wav_bytes(1.0, freq=220.0 * (i + 1) + 30 * j))
        systems[name] = root / name
    ListeningStore(root / "data" / "listening").create_test("browser test", read_prompts(prompts), systems)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app = make_app(tiny_musiclm, root / "data", workers=1)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the studio server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", root / "data"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _errors(browser) -> list[str]:
    return [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def test_generate_in_the_studio_and_play_it(browser, live_server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, _ = live_server
    browser.get(url + "/")
    WebDriverWait(browser, 30).until(lambda b: b.find_elements(By.CSS_SELECTOR, "#examples .chip"))
    prompt = browser.find_element(By.ID, "prompt")
    prompt.clear()
    prompt.send_keys("a calm piano piece with soft strings")
    duration = browser.find_element(By.ID, "duration")
    duration.clear()
    duration.send_keys("1.5")
    browser.find_element(By.ID, "seed").send_keys("11")
    browser.find_element(By.ID, "generate").click()
    # a card with a live progress bar appears, then the player
    WebDriverWait(browser, 10).until(lambda b: b.find_elements(By.CSS_SELECTOR, "#history .card"))
    WebDriverWait(browser, 120).until(lambda b: b.execute_script(
        "const a = document.querySelector('#history .card audio'); return a !== null && a.duration > 0"))
    seconds = browser.execute_script("return document.querySelector('#history .card audio').duration")
    assert seconds == pytest.approx(1.5, abs=0.05)
    card = browser.find_element(By.CSS_SELECTOR, "#history .card")
    assert "a calm piano piece with soft strings" in card.text and "seed 11" in card.text
    assert browser.execute_script(  # playback starts
        "const a = document.querySelector('#history .card audio'); return a.play().then(() => true)")
    WebDriverWait(browser, 30).until(lambda b: b.execute_script(
        "const i = document.querySelector('#history .card img.spec'); return i.complete && i.naturalWidth > 0"))
    link = browser.find_element(By.LINK_TEXT, "Download WAV").get_attribute("href")
    assert link.endswith("/audio?download=1")
    time.sleep(0.5)  # the waveform is drawn
    shot = tmp_path / "studio.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    if os.environ.get("MUSICLM_STUDIO_SCREENSHOT"):
        shutil.copyfile(shot, Path(os.environ["MUSICLM_STUDIO_SCREENSHOT"]))
    assert _errors(browser) == []


def test_rate_one_pair_of_a_listening_test(browser, live_server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, data = live_server
    browser.get(url + "/listen?test=browser%20test")
    WebDriverWait(browser, 30).until(lambda b: b.find_elements(By.CSS_SELECTOR, "#test option"))
    browser.find_element(By.ID, "rater").send_keys("selenium")
    browser.find_element(By.ID, "start").click()
    WebDriverWait(browser, 30).until(lambda b: b.find_element(By.ID, "caption").text)
    caption = browser.find_element(By.ID, "caption").text
    assert caption in ("a calm piano piece", "fast punk drums")
    assert browser.find_element(By.ID, "counter").text == "pair 1 of 2"
    much_better_b = browser.find_element(By.CSS_SELECTOR, "#scale button[data-score='2']")
    assert not much_better_b.is_enabled()  # listen first
    for clip in ("clip-a", "clip-b"):
        browser.execute_script(f"return document.getElementById('{clip}').play()")
    WebDriverWait(browser, 30).until(lambda b: much_better_b.is_enabled())
    clip_b = browser.execute_script("return document.getElementById('clip-b').src").rsplit("/", 1)[-1]
    much_better_b.click()
    WebDriverWait(browser, 30).until(lambda b: b.find_element(By.ID, "counter").text == "pair 2 of 2")

    ratings = ListeningStore(data / "listening").ratings("browser test")
    assert len(ratings) == 1
    (rating,) = ratings
    assert rating["rater"] == "selenium" and rating["score"] == 2 and rating["caption"] == caption
    with ListeningStore(data / "listening").connect() as conn:
        (right,) = conn.execute("SELECT c.token FROM ratings r JOIN clips c ON c.id = r.right_clip").fetchone()
    assert right == clip_b

    browser.get(url + "/listen/results?test=browser%20test")
    WebDriverWait(browser, 30).until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#systems tr")) == 3)
    table = browser.find_element(By.ID, "systems").text
    assert "1.000" in table and "0.000" in table
    assert len(browser.find_elements(By.CSS_SELECTOR, "#pairs tr")) == 2
    assert _errors(browser) == []
