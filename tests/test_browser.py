"""The collected report in a real browser: headless Chromium driven over the DevTools protocol.

Checks that the page names every run, that every image loads (non-zero natural size), that the console
shows no errors, and that nothing is fetched from the network; saves a full-page screenshot (copied
to $JOBKIT_SCREENSHOT_DIR when set). Skipped without Chromium unless JOBKIT_REQUIRE_BROWSER=1.
The WebSocket client is the few lines below (stdlib only: no test dependency).
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from demo_runs import make_charlm, make_vae

from jobkit.collect import collect

CHROMIUM = os.environ.get("JOBKIT_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--mute-audio", "--remote-debugging-port=0"]

pytestmark = pytest.mark.browser
if not Path(CHROMIUM).exists():
    if os.environ.get("JOBKIT_REQUIRE_BROWSER") == "1":
        raise RuntimeError(f"JOBKIT_REQUIRE_BROWSER=1 but {CHROMIUM} is missing (apt-get install chromium)")
    pytestmark = [pytest.mark.browser, pytest.mark.skip(reason=f"{CHROMIUM} missing (apt-get install chromium)")]


class DevTools:
    """A minimal CDP client: one page target, text frames, blocking calls; events are kept in order."""

    def __init__(self, ws_url: str, timeout: float = 30.0) -> None:
        u = urlparse(ws_url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {u.path} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("DevTools closed the connection during the handshake")
            head += chunk
        status = head.split(b"\r\n", 1)[0]
        assert b" 101 " in status, status
        self.buf = head.split(b"\r\n\r\n", 1)[1]
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def _read(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("DevTools connection closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 1 << 16:
            head += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack(">Q", n)
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def _message(self) -> dict[str, Any]:
        parts = []
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            mask = self._read(4) if b1 & 0x80 else None
            data = self._read(n)
            if mask:
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
            opcode = b0 & 0x0F
            if opcode == 0x9:  # ping
                self._send_frame(0xA, data)
                continue
            if opcode == 0x8:
                raise ConnectionError("DevTools closed the connection")
            if opcode in (0x0, 0x1, 0x2):
                parts.append(data)
                if b0 & 0x80:
                    return json.loads(b"".join(parts))

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        my_id = self.next_id
        self._send_frame(0x1, json.dumps({"id": my_id, "method": method, "params": params}).encode())
        while True:
            msg = self._message()
            if msg.get("id") == my_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def wait_for(self, method: str, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        for ev in self.events:
            if ev["method"] == method:
                return ev
        while time.monotonic() < deadline:
            msg = self._message()
            if "method" in msg:
                self.events.append(msg)
                if msg["method"] == method:
                    return msg
        raise TimeoutError(method)

    def close(self) -> None:
        try:
            self._send_frame(0x8, b"")
        finally:
            self.sock.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    profile = tmp_path_factory.mktemp("chromium-profile")
    log = open(profile.parent / "chromium.log", "wb")
    proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.is_file() and port_file.read_text().strip()):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Chromium did not start: {(profile.parent / 'chromium.log').read_text()[-2000:]}")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        yield port
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # our own process group: Chromium and its helpers
            proc.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    ids = {"charlm-demo": make_charlm(root), "vae-demo": make_vae(root)}
    return root, ids


CHECKS = """(() => {
  const imgs = [...document.images].map(i => ({src: i.getAttribute('src'), w: i.naturalWidth,
                                                h: i.naturalHeight, complete: i.complete}));
  return {title: document.title, text: document.body.innerText, imgs,
          charts: document.querySelectorAll('svg.chart').length,
          polylines: document.querySelectorAll('svg.chart polyline').length};
})()"""


def open_page(port: int, url: str, shot: Path) -> tuple[dict[str, Any], list[str], list[str]]:
    """Load `url` in the page target; returns (checks, console errors, request URLs) and saves `shot`."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as resp:
        pages = [t for t in json.load(resp) if t.get("type") == "page"]
    cdp = DevTools(pages[0]["webSocketDebuggerUrl"])
    try:
        for domain in ("Page", "Runtime", "Log", "Network"):
            cdp.call(f"{domain}.enable")
        cdp.call("Emulation.setDeviceMetricsOverride", width=1400, height=900, deviceScaleFactor=1, mobile=False)
        cdp.events.clear()
        cdp.call("Page.navigate", url=url)
        cdp.wait_for("Page.loadEventFired")
        checks = cdp.call("Runtime.evaluate", expression=CHECKS, returnByValue=True)["result"]["value"]
        height = int(cdp.call("Page.getLayoutMetrics")["cssContentSize"]["height"])
        cdp.call("Emulation.setDeviceMetricsOverride", width=1400, height=min(max(height, 900), 16000),
                 deviceScaleFactor=1, mobile=False)
        data = cdp.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        shot.write_bytes(base64.b64decode(data))
        cdp.call("Runtime.evaluate", expression="0")  # drain late console events
        errors, requests = [], []
        for ev in cdp.events:
            m, p = ev["method"], ev.get("params", {})
            if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
            elif m == "Runtime.exceptionThrown":
                errors.append(p.get("exceptionDetails", {}).get("text", "exception"))
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                errors.append(f"{p['entry'].get('text')} ({p['entry'].get('url', '')})")
            elif m == "Network.requestWillBeSent":
                requests.append(p["request"]["url"])
        return checks, errors, requests
    finally:
        cdp.close()


@pytest.mark.parametrize("sweep", ["charlm-demo", "vae-demo"])
def test_report_in_browser(browser, sweeps, sweep, tmp_path):
    root, ids = sweeps
    report = collect(root, sweep)
    shot = tmp_path / f"{sweep}.png"
    checks, errors, requests = open_page(browser, report.index.resolve().as_uri(), shot)

    assert sweep in checks["title"]
    for run_id in ids[sweep]:
        assert run_id in checks["text"], f"page does not name {run_id}"
    assert checks["charts"] >= 1 and checks["polylines"] >= 2
    assert errors == [], errors
    broken = [i["src"] for i in checks["imgs"] if not (i["complete"] and i["w"] > 0 and i["h"] > 0)]
    assert broken == []
    if sweep == "vae-demo":
        assert len(checks["imgs"]) >= 10  # prior/recon/traversal/rotation grids of the finished runs
        assert "MIG per β" in checks["text"]
    else:
        assert "true continuation" in checks["text"]
    offline = [u for u in requests if urlparse(u).scheme not in ("file", "data", "about")]
    assert offline == [], f"the report fetched from the network: {offline}"
    assert shot.stat().st_size > 10_000
    if os.environ.get("JOBKIT_SCREENSHOT_DIR"):
        dest = Path(os.environ["JOBKIT_SCREENSHOT_DIR"])
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, dest / shot.name)


def test_browser_sees_a_broken_image(browser, sweeps, tmp_path):
    """The checks above can fail: a report whose image was deleted shows up as broken."""
    root, _ = sweeps
    report = collect(root, "vae-demo", out=tmp_path / "report")
    victim = next((report.out / "img").rglob("*-prior.png"))
    victim.unlink()
    checks, errors, _ = open_page(browser, report.index.resolve().as_uri(), tmp_path / "broken.png")
    broken = [i["src"] for i in checks["imgs"] if i["w"] == 0]
    assert len(broken) == 1 and broken[0].endswith(victim.name)
    assert any("ERR_FILE_NOT_FOUND" in e or victim.name in e for e in errors), errors


# --- a large sweep: the paged table, its filters and sorting, a run's own page ----------------------

LARGE = 300  # above bigpage.LARGE_ABOVE, small enough to make in a few seconds


def wait_js(cdp: DevTools, condition: str, timeout_ms: int = 20000) -> Any:
    """Evaluate `condition` until it is truthy (in the page); its value."""
    expr = (f"new Promise((ok, no) => {{ const t0 = Date.now(); const t = setInterval(() => {{ let v; "
            f"try {{ v = ({condition}); }} catch (e) {{ v = null; }} if (v) {{ clearInterval(t); ok(v); }} "
            f"else if (Date.now() - t0 > {timeout_ms}) {{ clearInterval(t); no(new Error('timed out')); }} }}, 20); }})")
    res = cdp.call("Runtime.evaluate", expression=expr, awaitPromise=True, returnByValue=True)
    assert "exceptionDetails" not in res, f"never true in the page: {condition}"
    return res["result"]["value"]


def js(cdp: DevTools, expression: str) -> Any:
    res = cdp.call("Runtime.evaluate", expression=expression, returnByValue=True)
    assert "exceptionDetails" not in res, res["exceptionDetails"]
    return res["result"].get("value")


def page_session(port: int) -> DevTools:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as resp:
        pages = [t for t in json.load(resp) if t.get("type") == "page"]
    cdp = DevTools(pages[0]["webSocketDebuggerUrl"])
    for domain in ("Page", "Runtime", "Log", "Network"):
        cdp.call(f"{domain}.enable")
    cdp.call("Emulation.setDeviceMetricsOverride", width=1400, height=900, deviceScaleFactor=1, mobile=False)
    cdp.events.clear()
    return cdp


def problems(cdp: DevTools) -> tuple[list[str], list[str]]:
    """(console errors, requests to anything but files) seen so far."""
    errors, remote = [], []
    for ev in cdp.events:
        m, p = ev["method"], ev.get("params", {})
        if m == "Runtime.exceptionThrown" or (m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error"):
            errors.append(json.dumps(p)[:300])
        elif m == "Network.requestWillBeSent" and urlparse(p["request"]["url"]).scheme not in ("file", "data", "about"):
            remote.append(p["request"]["url"])
    return errors, remote


ROWS = "[...document.querySelectorAll('#rows tr')]"
CELL = "(tr, name) => tr.children[[...document.querySelectorAll('#runs-table thead th.sort')].findIndex(th => th.textContent === name)].textContent"


def test_large_sweep_page_pages_filters_sorts_and_links_each_run(browser, tmp_path):
    from synthetic_runs import make_sweep

    from jobkit.collect.bigpage import LARGE_ABOVE
    from jobkit.observe.runstate import summarize

    runs = make_sweep(tmp_path / "runs", LARGE, sweep="big")
    assert LARGE > LARGE_ABOVE
    report = collect(tmp_path / "runs", "big")
    lrs = {r.run_id: summarize(r).params["lr"] for r in runs}
    cdp = page_session(browser)
    try:
        cdp.call("Page.navigate", url=report.index.resolve().as_uri())
        cdp.wait_for("Page.loadEventFired")
        wait_js(cdp, "document.body.dataset.ready === '1'")
        # one page of rows, not every run: the DOM stays small
        assert js(cdp, f"{ROWS}.length") == 100
        assert js(cdp, "document.getElementById('count').textContent") == f"{LARGE} runs"
        assert js(cdp, "document.getElementsByTagName('*').length") < 5000
        shown = js(cdp, f"{ROWS}.map(tr => tr.querySelector('a').textContent)")
        assert set(shown) <= set(lrs) and len(set(shown)) == 100
        # filter lr > 0.05: exactly the runs whose lr is above it
        js(cdp, "(() => { const el = [...document.querySelectorAll('input.f')][[...document.querySelectorAll("
                "'#runs-table thead th.sort')].findIndex(th => th.textContent === 'lr')]; el.value = '>0.05'; "
                "el.dispatchEvent(new Event('input')); })()")
        want = sorted(rid for rid, lr in lrs.items() if lr > 0.05)
        assert 0 < len(want) <= 100  # one page holds them all
        assert js(cdp, "document.getElementById('count').textContent") == f"{len(want)} of {LARGE} runs"
        assert sorted(js(cdp, f"{ROWS}.map(tr => tr.querySelector('a').textContent)")) == want
        # sort by lr: ascending, then descending on a second click
        click = "[...document.querySelectorAll('#runs-table thead th.sort')].find(th => th.textContent === 'lr').click()"
        js(cdp, click)
        up = js(cdp, f"(() => {{ const cell = {CELL}; return {ROWS}.map(tr => parseFloat(cell(tr, 'lr'))); }})()")
        assert up == sorted(up) and up[0] == pytest.approx(min(lrs[r] for r in want), rel=1e-3)
        js(cdp, click)
        down = js(cdp, f"(() => {{ const cell = {CELL}; return {ROWS}.map(tr => parseFloat(cell(tr, 'lr'))); }})()")
        assert down == sorted(down, reverse=True) and down[0] == pytest.approx(max(lrs.values()), rel=1e-3)
        # the best of each group is picked at the start: their curves come from the curves/ chunks
        assert wait_js(cdp, "document.querySelectorAll('#curve-charts svg polyline').length") >= 2
        assert js(cdp, "document.querySelectorAll('#best tbody tr').length") >= 2
        # a run's own page: linked from its row, written beside the index, with its charts
        first = js(cdp, f"{ROWS}[0].querySelector('a').href")
        errors, remote = problems(cdp)
        assert errors == [] and remote == []
        cdp.events.clear()
        cdp.call("Page.navigate", url=first)
        cdp.wait_for("Page.loadEventFired")
        run_id = first.rsplit("/", 1)[1].removesuffix(".html")
        assert run_id in lrs
        assert run_id in js(cdp, "document.title")
        assert js(cdp, "document.querySelectorAll('svg.chart polyline').length") >= 2
        assert js(cdp, "getComputedStyle(document.querySelector('table')).borderCollapse") == "collapse"  # style.css
        errors, remote = problems(cdp)
        assert errors == [] and remote == []
    finally:
        cdp.close()
