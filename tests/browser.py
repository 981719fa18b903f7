"""A real headless Chromium for the browser tests, from Debian's `chromium` and
`chromium-driver` packages (scripts/install-deps.sh installs them), driven with Selenium.

Nothing is downloaded at run time: the driver and the browser are given by path, so Selenium
Manager is never asked to fetch either. Every process started here (chromedriver and the
browser processes under it) is ended by pid when the context exits."""

import contextlib
import os
import shutil
import signal
import time
from pathlib import Path

CHROMIUM = os.environ.get("CHROMIUM_BINARY") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = os.environ.get("CHROMEDRIVER_BINARY") or shutil.which("chromedriver") or "/usr/bin/chromedriver"
WINDOW = (1280, 900)


def _descendants(pid: int) -> list[int]:
    """Every live process below `pid`, from /proc (children before their own children)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid …: comm may hold spaces and parentheses.
        fields = stat[stat.rindex(")") + 2:].split()
        parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found, queue = [], [pid]
    while queue:
        for child in parents.get(queue.pop(0), []):
            found.append(child)
            queue.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rindex(")") + 2] != "Z"


def _end(pids: list[int]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.05)


@contextlib.contextmanager
def headless_chromium(profile_dir: Path):
    """A Selenium Chrome driver on headless Chromium, as root in CI: no sandbox, and the
    stack's self-signed certificate (nginx and the fake Stripe) accepted."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for binary in (CHROMIUM, CHROMEDRIVER):
        if not Path(binary).is_file():
            raise RuntimeError(f"{binary} is missing: run scripts/install-deps.sh (Debian chromium, chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--ignore-certificate-errors", "--disable-dev-shm-usage",
                     "--disable-gpu", "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                     "--disable-background-networking", "--disable-sync", "--no-proxy-server",
                     f"--window-size={WINDOW[0]},{WINDOW[1]}", f"--user-data-dir={profile_dir}"):
        options.add_argument(argument)
    options.accept_insecure_certs = True
    # The console (CSP violations, script errors) is readable with driver.get_log("browser").
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=CHROMEDRIVER, log_output=str(Path(profile_dir).parent / "chromedriver.log"))
    driver = None
    pids = []
    try:
        driver = webdriver.Chrome(service=service, options=options)
        driver.set_page_load_timeout(30)
        pids = [service.process.pid, *_descendants(service.process.pid)]
        yield driver
    finally:
        if service.process is not None:
            pids = list(dict.fromkeys([service.process.pid, *_descendants(service.process.pid), *pids]))
        try:
            if driver is not None:
                driver.quit()
            else:
                service.stop()
        finally:
            _end(pids)


def wait_through_navigation(driver, timeout, condition):
    """Waits until `condition(driver)` is truthy while the page may be navigating away (a
    click whose script fetches and then sets `location`). Chromedriver refuses a command that
    a navigation interrupts ("aborted by navigation"); that only means "not there yet"."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    def attempt(d):
        try:
            return condition(d)
        except WebDriverException as error:
            if "aborted by navigation" in str(error):
                return False
            raise
    return WebDriverWait(driver, timeout, ignored_exceptions=[StaleElementReferenceException]).until(attempt)
