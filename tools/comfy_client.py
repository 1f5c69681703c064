"""Queue a prompt and follow it the way the ComfyUI frontend does.

The frontend opens ``/ws?clientId=<id>`` first, then POSTs ``/prompt`` with the same
``client_id``; the server pushes ``execution_start``, ``execution_cached``,
``executing`` (``node`` null when the prompt is done), ``progress``, ``executed``,
``execution_error`` / ``execution_interrupted`` (and ``execution_success`` on newer
hosts) for that client.  Results are read from ``/history/<prompt_id>`` and files
fetched with ``/view``.

    entry = run_prompt(comfy.url, api_workflow, on_event=print)
    data = fetch_file(comfy.url, entry["outputs"]["9"]["images"][0])
"""
from __future__ import annotations

import asyncio
import json
import urllib.parse
import urllib.request
import uuid

from .comfy_process import prompt_reply


HISTORY_WAIT_S = 60


class PromptError(RuntimeError):
    """The server refused the prompt, or running it failed; the message says which node and why."""

    def __init__(self, message: str, details: dict | None = None):
        super().__init__(message)
        self.details = details or {}


def _rejected(body: dict) -> PromptError:
    error = body.get("error", {})
    reason = error.get("message", body.get("text", body))  # "text": a plain-text answer (2024 hosts)
    lines = [f"the server refused the prompt: {reason} {error.get('details', '')}".strip()]
    for node_id, node in (body.get("node_errors") or {}).items():
        for e in node.get("errors", []):
            lines.append(f"  node {node_id} ({node.get('class_type')}): {e.get('message')}: {e.get('details')}")
    return PromptError("\n".join(lines), body)


def _failed(kind: str, data: dict) -> PromptError:
    if kind == "execution_interrupted":
        return PromptError(f"the prompt was interrupted at node {data.get('node_id')} ({data.get('node_type')})", data)
    return PromptError(f"node {data.get('node_id')} ({data.get('node_type')}) failed: "
                       f"{data.get('exception_type', '')}: {data.get('exception_message', '').strip()}", data)


async def _run(url: str, prompt: dict, client_id: str, on_event, timeout: float) -> tuple:
    import aiohttp

    ws_url = "ws" + url[len("http"):] + f"/ws?clientId={urllib.parse.quote(client_id)}"
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(ws_url, heartbeat=30, max_msg_size=0) as ws:
            async with session.post(url + "/prompt", json={"prompt": prompt, "client_id": client_id}) as r:
                body = prompt_reply(await r.text())
                if r.status != 200:
                    raise _rejected(body)
            prompt_id = body["prompt_id"]

            async def follow():
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.BINARY:
                        continue  # live previews
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        break
                    event = json.loads(msg.data)
                    kind, data = event.get("type"), event.get("data") or {}
                    if data.get("prompt_id") not in (None, prompt_id):
                        continue
                    if on_event:
                        on_event(kind, data)
                    if kind in ("execution_error", "execution_interrupted"):
                        raise _failed(kind, data)
                    if kind == "execution_success" or (kind == "executing" and data.get("node") is None
                                                       and data.get("prompt_id") == prompt_id):
                        return
                raise ConnectionError("the server closed the progress connection (did it stop or crash?)")

            try:
                await asyncio.wait_for(follow(), timeout)
            except asyncio.TimeoutError:
                raise TimeoutError(f"prompt {prompt_id} did not finish within {timeout:.0f} s") from None
        # the server announces the end before it files the prompt in its history: wait for the entry
        for _ in range(int(HISTORY_WAIT_S / 0.25)):
            async with session.get(f"{url}/history/{prompt_id}") as r:
                entry = (await r.json(content_type=None)).get(prompt_id)
            if entry is not None:
                return prompt_id, entry
            await asyncio.sleep(0.25)
    raise TimeoutError(f"prompt {prompt_id} finished but did not appear in /history within {HISTORY_WAIT_S} s")


def run_prompt(url: str, prompt: dict, on_event=None, timeout: float = 1800.0, client_id: str | None = None) -> dict:
    """Queue ``prompt`` (API format), follow it over the websocket, return its /history entry
    (with ``prompt_id`` added).  Raises :class:`PromptError` when it is refused or fails."""
    prompt_id, entry = asyncio.run(_run(url, prompt, client_id or f"personalvideo-{uuid.uuid4().hex[:12]}",
                                        on_event, timeout))
    return dict(entry, prompt_id=prompt_id)


def interrupt(url: str) -> None:
    """POST /interrupt (what the frontend's Cancel does); ignores a server that is already gone."""
    try:
        urllib.request.urlopen(urllib.request.Request(url + "/interrupt", data=b"", method="POST"), timeout=10)
    except OSError:
        pass


def fetch_file(url: str, file_info: dict) -> bytes:
    """The bytes of an output file described like ``{"filename", "subfolder", "type"}`` (GET /view)."""
    query = urllib.parse.urlencode({"filename": file_info["filename"], "subfolder": file_info.get("subfolder", ""),
                                    "type": file_info.get("type", "output")})
    with urllib.request.urlopen(f"{url}/view?{query}", timeout=120) as r:
        return r.read()
