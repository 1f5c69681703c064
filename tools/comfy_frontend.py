"""The real ComfyUI frontend, served by a running host, in headless Chromium.

Chromium and its driver are Debian's ``chromium`` and ``chromium-driver`` packages, driven by the
pinned ``selenium`` through an explicit ``Service`` (so selenium never looks for a driver to
download). :func:`missing_browser` says why the browser checks cannot run here, or ``None``.

    with ComfyFrontend(server.url) as ui:
        report = ui.load(ui_workflow, "01_train.json")   # missing types, widget/link problems, errors
        prompt = ui.graph_to_prompt()                    # the frontend's own API conversion
        ui.screenshot("shot.png")
"""
from __future__ import annotations

import json
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

CHECK_JS = (Path(__file__).with_name("frontend_check.js")).read_text()

CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--hide-scrollbars",
)

# Frontend settings for a clean, repeatable page: no first-run template browser, the modern
# frontend's own workflow validation on, its missing-node warning on, no minimap over the graph.
FRONTEND_SETTINGS = {
    "Comfy.TutorialCompleted": True,
    "Comfy.Validation.Workflows": True,
    "Comfy.Workflow.ShowMissingNodesWarning": True,
    "Comfy.Workflow.ShowMissingModelsWarning": False,  # the download offers are checked on their own
    "Comfy.Minimap.Visible": False,
    "Comfy.DevMode": True,
}


# Host endpoints that newer frontends poll in the background, each with the text of the console error the
# frontend logs when the host lacks it. A frontend newer than its host (the newest lane's frontend on the
# v0.3.64 test host) logs these at random moments while a workflow loads; they say nothing about the workflow,
# so a load's report lists them apart (``host_gaps``), and only when the host really answers 404.
BACKGROUND_ENDPOINTS = {
    "/api/jobs": ("Failed to fetch jobs: 404",),
}


def chromium_paths():
    """(browser, driver) from Debian's packages, or None for each that is absent."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver") or (
        "/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None)
    return browser, driver


def missing_browser() -> str | None:
    browser, driver = chromium_paths()
    missing = [name for name, path in (("chromium", browser), ("chromium-driver", driver)) if not path]
    if missing:
        return (f"Debian package(s) {', '.join(missing)} not installed "
                "(apt-get install -y chromium chromium-driver)")
    return None


class FrontendError(RuntimeError):
    pass


class ComfyFrontend:
    def __init__(self, url: str, width: int = 1600, height: int = 1000, settings=None):
        self.url = url.rstrip("/")
        self.width, self.height = width, height
        self.settings = dict(FRONTEND_SETTINGS, **(settings or {}))
        self.driver = None
        self._profile = None
        self._gaps = None

    # --- life cycle -------------------------------------------------------------------------
    def __enter__(self) -> "ComfyFrontend":
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self, timeout: float = 90.0) -> "ComfyFrontend":
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        from selenium.common.exceptions import SessionNotCreatedException

        browser, driver = chromium_paths()
        self._post("/settings", self.settings)
        for attempt in (1, 2):  # on a loaded machine Chromium occasionally dies at start: one more try
            self._profile = tempfile.mkdtemp(prefix="pv-chromium-")
            options = webdriver.ChromeOptions()
            options.binary_location = browser
            for flag in CHROMIUM_FLAGS:
                options.add_argument(flag)
            options.add_argument(f"--user-data-dir={self._profile}")
            options.add_argument(f"--window-size={self.width},{self.height}")
            options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
            try:
                self.driver = webdriver.Chrome(service=Service(driver), options=options)
                break
            except SessionNotCreatedException:
                shutil.rmtree(self._profile, ignore_errors=True)
                if attempt == 2:
                    raise
        # the page (not the window) gets exactly width x height, for same-size screenshots
        self.resize(self.width, self.height)
        self.driver.set_script_timeout(60)
        self.driver.get(self.url + "/")
        self._wait_ready(timeout)
        self.driver.execute_script(CHECK_JS)
        return self

    def close(self) -> None:
        if self.driver is not None:
            self.driver.quit()
            self.driver = None
        if self._profile:
            shutil.rmtree(self._profile, ignore_errors=True)
            self._profile = None

    def resize(self, width: int, height: int) -> None:
        """Give the page exactly width x height pixels (screenshots have that size)."""
        self.width, self.height = width, height
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})

    def _wait_ready(self, timeout: float) -> None:
        # ready: the app is set up and the node definitions from /object_info are registered
        probe = ("return !!(window.app && window.app.graph && window.app.canvas && window.LiteGraph"
                 " && LiteGraph.registered_node_types && 'KSampler' in LiteGraph.registered_node_types)")
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.driver.execute_script(probe):
                time.sleep(0.5)  # let the start-up workflow and extensions settle
                return
            time.sleep(0.25)
        raise FrontendError(f"the ComfyUI frontend at {self.url} did not come up in {timeout} s: "
                            f"{self.console()[-10:]}")

    def _post(self, path: str, body) -> None:
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30):
            pass

    # --- what the page says ---------------------------------------------------------------
    def console(self) -> list[dict]:
        """Browser console entries since the last call (console.*, uncaught exceptions, network)."""
        return self.driver.get_log("browser")

    @staticmethod
    def errors(entries) -> list[str]:
        """Console errors and uncaught exceptions (not network 404s: those are checked by name)."""
        return [e["message"] for e in entries
                if e["level"] == "SEVERE" and e.get("source") in ("javascript", "console-api")]

    def host_gaps(self) -> dict[str, tuple[str, ...]]:
        """Of :data:`BACKGROUND_ENDPOINTS`, those this host answers with 404 (asked once per page)."""
        if self._gaps is None:
            self._gaps = {}
            for path, texts in BACKGROUND_ENDPOINTS.items():
                try:
                    urllib.request.urlopen(self.url + path, timeout=30).close()
                except urllib.error.HTTPError as e:
                    if e.code == 404:
                        self._gaps[path] = texts
        return self._gaps

    def split_errors(self, entries) -> tuple[list[str], list[str]]:
        """(errors, host_gaps): :meth:`errors`, less those that only say the host lacks an endpoint the
        frontend polls (see :data:`BACKGROUND_ENDPOINTS`), which come second."""
        texts = [t for group in self.host_gaps().values() for t in group]
        errors, gaps = [], []
        for message in self.errors(entries):
            (gaps if any(t in message for t in texts) else errors).append(message)
        return errors, gaps

    def frontend_version(self) -> str:
        return self.driver.execute_script(
            "return window.__COMFYUI_FRONTEND_VERSION__ || (window.app && app.ui && app.ui.settings ? "
            "'web/ (bundled with the host)' : 'unknown')")

    # --- workflows --------------------------------------------------------------------------
    def load(self, workflow: dict, name: str = "workflow.json") -> dict:
        """Load a UI workflow like the file-open path does; return what went wrong (see frontend_check.js).

        ``console_errors`` holds console errors and exceptions raised while it loaded; ``host_gaps`` those
        that only say the host lacks an endpoint a newer frontend polls.
        """
        self.console()  # drop what came before
        report = self.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "window.__pv.load(arguments[0], arguments[1]).then(done, (e) => done({exception: String(e && e.stack || e)}));",
            workflow, name)
        if "exception" in report:
            raise FrontendError(f"loading {name} threw in the page: {report['exception']}")
        entries = self.console()
        report["console_errors"], report["host_gaps"] = self.split_errors(entries)
        report["console"] = entries
        return report

    def graph_to_prompt(self) -> dict:
        """The frontend's own conversion of the loaded graph to an API prompt (``app.graphToPrompt()``)."""
        return self.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "window.__pv.toPrompt().then(done, (e) => done({__error__: String(e && e.stack || e)}));")

    def templates(self, module_name: str) -> dict:
        """Open the Templates browser at the category of custom node pack ``module_name``: ``found`` (the category
        is listed), ``text`` (what the dialog says), ``thumbnails`` ([{src, status}]: the pack's thumbnails the
        page fetched) and ``pictures`` (how many pictures the dialog shows, loaded)."""
        return self._call("templates", module_name)

    def download_offers(self) -> dict:
        """What the frontend offers for the missing models of the workflow just loaded: ``listed`` (file names) and
        ``offers`` ([{name, url, enabled, note}]: the address each Download button opens, caught, not followed).
        Needs the setting ``Comfy.Workflow.ShowMissingModelsWarning`` on (pass it in ``settings``)."""
        return self._call("downloadOffers")

    def _call(self, function: str, *args):
        result = self.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            f"window.__pv.{function}(...Array.from(arguments).slice(0, -1))"
            ".then(done, (e) => done({__error__: String(e && e.stack || e)}));", *args)
        if isinstance(result, dict) and "__error__" in result:
            raise FrontendError(f"{function} threw in the page: {result['__error__']}")
        return result

    def screenshot(self, path, fit: bool = True) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.driver.execute_script("window.__pv.closeOverlays()")
        if fit:
            self.driver.execute_script("window.__pv.fit()")
        time.sleep(0.3)  # a couple of frames for the canvas and DOM widgets
        self.driver.save_screenshot(str(path))
        return path
