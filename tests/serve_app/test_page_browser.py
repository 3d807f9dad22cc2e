"""The onboarding page in a real headless Chromium (Debian's chromium + chromium-driver, driven
by Selenium) against the real app on the session's Ray cluster: production mode with API keys
(202, then the page polls), then development mode (200) with a recording from Chromium's fake
microphone. One browser for the module; each state is saved as a screenshot under
test-output/screenshots/.

The engine is the paced tone stand-in (tests/support/paced_engines.py): these tests are about
the page; the model path is test_api.py's.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from tests.support.audio import decode_mp3, voice_file
from tests.support.paced_engines import paced_tone_engine_factory
from tests.support.server import VoiceqServer

API = "/api/public/voice/onboarding"
REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "test-output" / "screenshots"
KEY = "web-key-0123456789abcdef"
BUSY_KEY = "busy-key-0123456789abcdef"  # a key whose active-job quota is 0: every submission is a 429
USER = "browser-user"
MAX_UPLOAD_BYTES = 400_000  # development's limit here: a 9 s WAV is over it
WAIT_S = 60


def _binaries() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    found = _binaries()
    if found is None:
        # Never a silent skip: CI installs them (.ci/run). A developer without them opts out explicitly.
        if os.environ.get("VOICEQ_SKIP_BROWSER_TESTS") == "1":
            pytest.skip("VOICEQ_SKIP_BROWSER_TESTS=1")
        pytest.fail("the browser tests need Debian's chromium and chromium-driver (apt-get install chromium "
                    "chromium-driver; .ci/run does it); set VOICEQ_SKIP_BROWSER_TESTS=1 to leave them out")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    downloads = tmp_path_factory.mktemp("downloads")
    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1100,1000", "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                "--autoplay-policy=no-user-gesture-required", "--lang=en-US"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=found[1]))
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    driver.downloads = downloads
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def production(voiceq_server: VoiceqServer) -> VoiceqServer:
    voiceq_server.deploy(voiceq_server.settings_for(
        environment="production", auth="auto", api_keys=f"web:{KEY},busy:{BUSY_KEY}:active=0", poll_interval_s=0.5,
        max_batch_size=1,  # one job per 1.5 s pass: a job behind another stays queued, with a position
    ), engine_factory=paced_tone_engine_factory)
    return voiceq_server


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("samples")
    made = {
        "good": ("my-voice.wav", voice_file("wav", seconds=3.0)),
        "short": ("too-short.wav", voice_file("wav", seconds=0.5)),
        "large": ("too-large.wav", voice_file("wav", seconds=9.0)),
        "not_audio": ("notes.wav", b"These are my notes, not a recording.\n" * 20),
    }
    out = {}
    for name, (filename, data) in made.items():
        (folder / filename).write_bytes(data)
        out[name] = folder / filename
    return out


# --- helpers -------------------------------------------------------------------------------


def shot(driver: Any, name: str) -> None:
    driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


def full_page_shot(driver: Any, path: Path) -> None:
    width, height = driver.get_window_size()["width"], driver.get_window_size()["height"]
    full = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, full + 120)
    driver.save_screenshot(str(path))
    driver.set_window_size(width, height)


def el(driver: Any, element_id: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, element_id)


def wait_for(driver: Any, predicate: Any, what: str, timeout_s: float = WAIT_S) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout_s, poll_frequency=0.05).until(lambda d: predicate(d), message=what)


def open_page(driver: Any, server: VoiceqServer, *, key: str | None = None) -> None:
    driver.get(server.url + "/")
    driver.execute_script("sessionStorage.clear(); localStorage.setItem('voiceq.userId', arguments[0]);", USER)
    driver.get(server.url + "/")
    wait_for(driver, lambda d: d.execute_script("return document.body.dataset.ready === 'true'"), "the page to start")
    if key is not None:
        set_key(driver, key)


def set_key(driver: Any, key: str) -> None:
    field = el(driver, "api-key")
    field.clear()
    field.send_keys(key)
    assert driver.execute_script("return sessionStorage.getItem('voiceq.apiKey')") == key
    assert driver.execute_script("return localStorage.getItem('voiceq.apiKey')") is None


def pick(driver: Any, path: Path) -> None:
    chooser = el(driver, "audio-file")
    chooser.clear()
    chooser.send_keys(str(path))


def sample_ready(driver: Any) -> str:
    return wait_for(driver, lambda d: el(d, "sample-info").text.startswith("Sample ready")
                    and el(d, "sample-info").text, "the sample to be checked")


def status(driver: Any) -> str:
    return el(driver, "progress").get_attribute("data-status") or ""


def voices_settled(driver: Any) -> bool:
    """No load of the voice list in flight (a load replaces every item of the list)."""
    return el(driver, "voice-list").get_attribute("aria-busy") != "true"


def seen(driver: Any) -> list[str]:
    return (el(driver, "progress").get_attribute("data-seen") or "").split()


def audio_duration(driver: Any) -> float:
    return driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const audio = document.getElementById('result-audio');
        const report = () => done(audio.duration);
        if (audio.readyState >= 1 && isFinite(audio.duration)) report();
        else { audio.addEventListener('loadedmetadata', report, {once: true});
               audio.addEventListener('error', () => done(-1), {once: true}); }
    """)


def api_refusal(server: VoiceqServer, path: Path, key: str | None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    with server.client() as c:
        r = c.post(f"{API}/clone", headers=headers, data={"user_id": USER, "voice_name": "x"},
                   files={"audio_file": (path.name, path.read_bytes(), "application/octet-stream")})
    assert 400 <= r.status_code < 500, r.text  # 413 for the large file, 415 and 422 for the others
    return r.json()


# --- production: keys, refusals, 202 and polling, the voice library --------------------------


def test_a_missing_key_shows_the_key_prompt_and_a_wrong_key_the_servers_answer(
        production: VoiceqServer, browser: Any, files: dict[str, Path]) -> None:
    open_page(browser, production)
    assert el(browser, "key-section").is_displayed()
    assert "Enter your API key" in el(browser, "voices-status").text
    pick(browser, files["good"])
    sample_ready(browser)
    el(browser, "voice-name").send_keys("Browser Voice")
    el(browser, "submit").click()
    prompt = wait_for(browser, lambda d: el(d, "key-prompt").is_displayed() and el(d, "key-prompt"), "the key prompt")
    assert "needs an API key" in prompt.text
    assert browser.switch_to.active_element == el(browser, "api-key")
    assert el(browser, "progress").get_attribute("hidden") is not None  # nothing was sent
    shot(browser, "01-key-prompt")

    set_key(browser, "not-a-valid-key")
    el(browser, "submit").click()
    wait_for(browser, lambda d: status(d) == "refused", "the 401")
    assert "invalid API key" in el(browser, "key-prompt").text
    assert browser.switch_to.active_element == el(browser, "api-key")
    shot(browser, "02-wrong-key")


def test_a_refused_file_shows_the_apis_own_message(production: VoiceqServer, browser: Any,
                                                    files: dict[str, Path]) -> None:
    open_page(browser, production, key=KEY)
    # Too short: refused before uploading, in the words the API refuses it with.
    pick(browser, files["short"])
    error = wait_for(browser, lambda d: el(d, "sample-error").is_displayed() and el(d, "sample-error"),
                     "the short sample to be refused")
    assert error.text == api_refusal(production, files["short"], KEY)["error"]
    assert "too short" in error.text
    shot(browser, "03-refused-too-short")

    # Not audio at all: the browser cannot tell how long it is, so the server decides.
    pick(browser, files["not_audio"])
    assert "checked by the server" in sample_ready(browser)
    el(browser, "voice-name").send_keys("Notes")
    el(browser, "submit").click()
    wait_for(browser, lambda d: status(d) == "refused", "the server's refusal")
    message = el(browser, "form-error").text
    assert message == api_refusal(production, files["not_audio"], KEY)["error"]
    assert "not an accepted format" in message
    assert browser.switch_to.active_element == el(browser, "form-error")
    shot(browser, "04-refused-by-the-server")


def test_a_clone_is_queued_processed_played_and_downloaded(production: VoiceqServer, browser: Any,
                                                           files: dict[str, Path]) -> None:
    from selenium.webdriver.common.keys import Keys

    open_page(browser, production, key=KEY)
    pick(browser, files["good"])
    assert sample_ready(browser).startswith("Sample ready: 3.0 s")
    el(browser, "sample-text").send_keys("Hello from the browser.")
    name = el(browser, "voice-name")
    name.send_keys("Browser Voice")
    # Another user's job first: it holds the engine while the page's job waits its turn.
    with production.client(headers={"Authorization": f"Bearer {KEY}"}) as c:
        r = c.post(f"{API}/clone", data={"user_id": "someone-else", "voice_name": "Ahead"},
                   files={"audio_file": ("ahead.wav", files["good"].read_bytes(), "audio/wav")})
        assert r.status_code == 202, r.text
    name.send_keys(Keys.ENTER)  # the keyboard submits the form

    # The queued state shows the job's place, from a poll of the status route.
    wait_for(browser, lambda d: status(d) == "queued" and "in the queue" in el(d, "status-text").text,
             "the queued job's position")
    shot(browser, "05-queued")
    for state in ("processing",):
        wait_for(browser, lambda d: status(d) == state, f"the job to be {state}")
        shot(browser, f"05-{state}")
    wait_for(browser, lambda d: status(d) in ("completed", "failed", "refused"), "the job to finish")
    assert status(browser) == "completed", el(browser, "status-text").text
    assert seen(browser) == ["uploading", "queued", "processing", "completed"]
    assert browser.switch_to.active_element == el(browser, "result-heading")  # focus moved to the result
    assert audio_duration(browser) > 0
    full_page_shot(browser, SCREENSHOTS / "06-completed.png")

    download = el(browser, "download")
    assert download.get_attribute("download") == "Browser-Voice.mp3"
    download.click()
    target = browser.downloads / "Browser-Voice.mp3"
    deadline = time.monotonic() + 20
    while not target.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert target.exists(), list(browser.downloads.iterdir())
    samples, rate = decode_mp3(target.read_bytes())
    assert len(samples) / rate > 0
    with production.client(headers={"Authorization": f"Bearer {KEY}"}) as c:
        (job,) = [j for j in c.get(f"{API}/jobs", params={"user_id": USER}).json()["jobs"] if j["status"] == "completed"]
        assert c.get(f"{API}/jobs/{job['jobId']}/audio").content == target.read_bytes()


def test_a_quota_answer_shows_when_to_try_again(production: VoiceqServer, browser: Any,
                                               files: dict[str, Path]) -> None:
    open_page(browser, production, key=BUSY_KEY)
    pick(browser, files["good"])
    sample_ready(browser)
    el(browser, "voice-name").send_keys("Busy")
    el(browser, "submit").click()
    wait_for(browser, lambda d: status(d) == "refused", "the 429")
    message = el(browser, "form-error").text
    assert message.startswith("Too many jobs for now: ") and "Try again in " in message, message
    assert not el(browser, "submit").is_enabled()  # until Retry-After has passed
    shot(browser, "07-rate-limited")


def test_the_voice_list_speaks_a_new_text_and_deletes_a_voice(production: VoiceqServer, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions

    open_page(browser, production, key=KEY)
    items = wait_for(browser, lambda d: voices_settled(d) and d.find_elements(By.CSS_SELECTOR, "#voice-list li"),
                     "the voice list")
    (item,) = items
    voice_id = item.get_attribute("data-voice-id")
    assert item.find_element(By.TAG_NAME, "h3").text == "Browser Voice"
    item.find_element(By.CSS_SELECTOR, "form.speak input").send_keys("Something new to say.")
    item.find_element(By.CSS_SELECTOR, "form.speak button[type=submit]").click()
    wait_for(browser, lambda d: status(d) in ("completed", "failed", "refused"), "the new text to be spoken")
    assert status(browser) == "completed", el(browser, "status-text").text
    assert audio_duration(browser) > 0
    shot(browser, "08-spoken-with-a-saved-voice")

    # A completed job reloads the list (its voice may be new): act on the reloaded items.
    wait_for(browser, voices_settled, "the voice list to reload")
    item = browser.find_element(By.CSS_SELECTOR, f"#voice-list li[data-voice-id='{voice_id}']")
    item.find_element(By.CSS_SELECTOR, "button.danger").click()
    wait_for(browser, expected_conditions.alert_is_present(), "the confirmation")
    browser.switch_to.alert.accept()
    wait_for(browser, lambda d: "Deleted" in el(d, "voices-status").text, "the deletion")
    assert browser.find_elements(By.CSS_SELECTOR, "#voice-list li") == []
    with production.client(headers={"Authorization": f"Bearer {KEY}"}) as c:
        assert c.get(f"{API}/voices/{voice_id}").status_code == 404
    shot(browser, "09-voice-deleted")


def test_the_page_fits_a_phone_and_labels_every_control(production: VoiceqServer, browser: Any) -> None:
    size = browser.get_window_size()
    try:
        browser.set_window_size(390, 844)
        open_page(browser, production)
        fits = browser.execute_script(
            "return document.documentElement.scrollWidth <= document.documentElement.clientWidth")
        assert fits, "the page scrolls sideways at phone width"
        shot(browser, "10-phone")
    finally:
        browser.set_window_size(size["width"], size["height"])
    unlabeled = browser.execute_script("""
        return [...document.querySelectorAll('input, select, textarea, audio')]
          .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')).map(e => e.id);
    """)
    assert unlabeled == []


# --- development: no keys, 200 at once, a recording from the microphone ---------------------


def test_development_records_from_the_microphone_and_answers_at_once(voiceq_server: VoiceqServer, browser: Any,
                                                                    files: dict[str, Path]) -> None:
    from selenium.webdriver.support.ui import Select

    voiceq_server.deploy(voiceq_server.settings_for(environment="development", max_upload_bytes=MAX_UPLOAD_BYTES,
                                                    models="chatterbox,chatterbox-multilingual"),
                         engine_factory=paced_tone_engine_factory)
    open_page(browser, voiceq_server)
    assert not el(browser, "key-section").is_displayed()
    # Two models served: the page offers the choice, and a language for the multilingual one.
    assert el(browser, "model-row").is_displayed() and not el(browser, "language-row").is_displayed()
    Select(el(browser, "model")).select_by_value("chatterbox-multilingual")
    assert el(browser, "language-row").is_displayed()
    Select(el(browser, "language")).select_by_value("fr")
    # Too large for this server: refused before uploading, as the API's 413 would be.
    pick(browser, files["large"])
    wait_for(browser, lambda d: "too large" in el(d, "sample-error").text, "the large sample to be refused")
    assert el(browser, "sample-error").text == api_refusal(voiceq_server, files["large"], None)["error"]
    shot(browser, "11-refused-too-large")

    el(browser, "record").click()
    wait_for(browser, lambda d: el(d, "stop").is_enabled(), "the recording to start")
    time.sleep(2.5)
    el(browser, "stop").click()
    info = sample_ready(browser)
    seconds = float(el(browser, "sample-info").get_attribute("data-seconds"))
    assert 1.5 < seconds < 4.0, info
    el(browser, "voice-name").send_keys("Recorded Voice")
    el(browser, "sample-text").send_keys("Bonjour, voici ma voix.")
    el(browser, "submit").click()
    wait_for(browser, lambda d: status(d) == "processing", "the job to be processing")
    shot(browser, "12-dev-processing")
    wait_for(browser, lambda d: status(d) in ("completed", "failed", "refused"), "the answer")
    assert status(browser) == "completed", el(browser, "status-text").text
    assert seen(browser) == ["uploading", "processing", "completed"]
    assert audio_duration(browser) > 0
    assert el(browser, "download").get_attribute("href").startswith("blob:")
    shot(browser, "13-dev-completed")
    with httpx.Client(base_url=voiceq_server.url) as c:
        voices = c.get(f"{API}/voices", params={"user_id": USER}).json()["voices"]
        jobs = c.get(f"{API}/jobs", params={"user_id": USER}).json()["jobs"]
        job = c.get(jobs[0]["statusUrl"]).json()
    assert [v["name"] for v in voices] == ["Recorded Voice"]
    assert (job["voiceName"], job["model"], job["language"]) == ("Recorded Voice", "chatterbox-multilingual", "fr")


def test_nothing_the_page_did_broke_its_content_security_policy(browser: Any) -> None:
    # The browser's console over the whole module (every page load above): the page's own
    # script, styles and audio (blob: and data: URLs) all within the policy it is served with.
    logs = browser.get_log("browser")
    assert logs, "the browser's console log is not being collected"
    violations = [e["message"] for e in logs if "Content Security Policy" in e["message"]]
    assert violations == []
