"""Headless Chromium through the DevTools protocol: open a page, wait until its scripts say it is
ready, evaluate JavaScript, take a screenshot (for tests and the README figures).

Written by hand because it is ~80 lines over ``websocket-client``; playwright's own browser
download is not available offline, and ``chromium --screenshot`` cannot wait for WebGL drawing.
WebGL runs on SwiftShader (software GL).
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from medseg.localhost import free_port, stop_process

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
FLAGS = ["--headless", "--no-sandbox", "--use-gl=angle", "--use-angle=swiftshader",
         "--enable-unsafe-swiftshader", "--hide-scrollbars", "--no-first-run", "--mute-audio",
         "--disable-extensions", "--allow-file-access-from-files"]


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


class Browser:
    """One headless Chromium with one page; use as a context manager."""

    def __init__(self, width: int = 1000, height: int = 700, executable: str | None = None):
        import websocket

        executable = executable or find_chromium()
        if executable is None:
            raise FileNotFoundError("no chromium on PATH")
        self._profile = tempfile.TemporaryDirectory(prefix="medseg-chromium-")
        port = free_port()
        self._process = subprocess.Popen(
            [executable, *FLAGS, f"--remote-debugging-port={port}", f"--user-data-dir={self._profile.name}",
             f"--window-size={width},{height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as r:
                    pages = [t for t in json.load(r) if t["type"] == "page"]
                if pages:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or self._process.poll() is not None:
                self.close()
                raise RuntimeError("chromium did not start its DevTools endpoint")
            time.sleep(0.2)
        self._ws = websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=60)
        self._id = 0
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                  mobile=False)

    def call(self, method: str, **params) -> dict:
        self._id += 1
        self._ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            message = json.loads(self._ws.recv())
            if message.get("id") == self._id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def open(self, url: str, *, ready: str = "document.readyState === 'complete'", timeout: float = 30.0) -> None:
        """Navigate and wait until ``ready`` (a JS expression) is true; a page that sets
        ``document.body.dataset.error`` fails at once with that message."""
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + timeout
        time.sleep(0.1)
        while True:
            state = self.evaluate(f"(() => {{ try {{ return [document.readyState, !!({ready}), "
                                  "document.body.dataset.error || '']; } "
                                  "catch (e) { return ['loading', false, '']; } })()")
            if state and state[2]:
                raise RuntimeError(f"{url}: page error: {state[2]}")
            if state and state[0] == "complete" and state[1]:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url}: not ready after {timeout:.0f} s ({ready})")
            time.sleep(0.1)

    def screenshot(self, path: Path | None = None) -> bytes:
        data = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        if path is not None:
            Path(path).write_bytes(data)
        return data

    def close(self) -> None:
        try:
            if getattr(self, "_ws", None):
                self._ws.close()
        finally:
            stop_process(self._process, 10)
            self._profile.cleanup()

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
