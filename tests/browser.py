"""A page opened in headless Chromium with the network off, driven over the DevTools protocol (aiohttp's
websocket client, no browser-automation package): what the console and the network reported, answers to
JavaScript questions about the page, and a screenshot."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


@dataclass
class Visit:
    console_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    answers: dict = field(default_factory=dict)
    screenshot: bytes = b""


def visit(page: Path, questions: dict[str, str], width: int = 1300, height: int = 2400, timeout: float = 60) -> Visit:
    """Open `page` (a local file) offline; `questions` maps a name to a JavaScript expression whose value (JSON)
    lands in `answers`, evaluated once the page has loaded."""
    binary = find_chromium()
    profile = Path(tempfile.mkdtemp(prefix="vidprobe-chromium-"))
    process = subprocess.Popen(
        [
            binary,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.time() + timeout
        while not port_file.is_file() or not port_file.read_text().strip():
            if time.time() > deadline or process.poll() is not None:
                raise RuntimeError(f"{binary} did not start its DevTools endpoint")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        return asyncio.run(asyncio.wait_for(drive(port, page, questions, width, height), timeout))
    finally:
        process.kill()
        process.wait()
        shutil.rmtree(profile, ignore_errors=True)


async def drive(port: int, page: Path, questions: dict[str, str], width: int, height: int) -> Visit:
    out = Visit()
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/json/list") as response:
            targets = await response.json()
        url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
        async with http.ws_connect(url, max_msg_size=0) as ws:
            counter, pending, loaded = 0, {}, asyncio.Event()

            async def listen():
                async for message in ws:
                    data = json.loads(message.data)
                    if "id" in data and data["id"] in pending:
                        pending.pop(data["id"]).set_result(data)
                    method, params = data.get("method"), data.get("params", {})
                    if method == "Runtime.exceptionThrown":
                        out.console_errors.append(json.dumps(params["exceptionDetails"])[:500])
                    elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
                        out.console_errors.append(" ".join(str(a.get("value", a)) for a in params["args"]))
                    elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                        out.console_errors.append(params["entry"]["text"])
                    elif method == "Network.requestWillBeSent":
                        out.requests.append(params["request"]["url"][:120])
                    elif method == "Network.loadingFailed":
                        out.failed_requests.append(f"{params.get('errorText')} ({params.get('requestId')})")
                    elif method == "Page.loadEventFired":
                        loaded.set()

            async def call(method: str, **params) -> dict:
                nonlocal counter
                counter += 1
                future = asyncio.get_running_loop().create_future()
                pending[counter] = future
                await ws.send_str(json.dumps({"id": counter, "method": method, "params": params}))
                reply = await future
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

            listener = asyncio.create_task(listen())
            for domain in ("Runtime", "Log", "Network", "Page"):
                await call(f"{domain}.enable")
            await call(
                "Network.emulateNetworkConditions", offline=True, latency=0, downloadThroughput=-1, uploadThroughput=-1
            )
            await call(
                "Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False
            )
            await call("Page.navigate", url=page.resolve().as_uri())
            await loaded.wait()
            await asyncio.sleep(0.5)  # images decode after load
            for name, expression in questions.items():
                result = await call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
                if "exceptionDetails" in result:
                    raise RuntimeError(f"{name}: {result['exceptionDetails']}")
                out.answers[name] = result["result"].get("value")
            shot = await call("Page.captureScreenshot", format="png")
            out.screenshot = base64.b64decode(shot["data"])
            listener.cancel()
    return out
