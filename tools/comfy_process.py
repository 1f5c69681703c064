"""A headless ComfyUI process on 127.0.0.1 and the few HTTP calls scripts need.

    with ComfyProcess("/path/to/ComfyUI", base_dir="/tmp/base") as comfy:
        info = comfy.get("/object_info")
        status, body = comfy.post_prompt(api_workflow)
        entry = comfy.wait(body["prompt_id"])

``base_dir`` is passed as ``--base-directory`` (ComfyUI >= 0.3: custom_nodes/, models/,
input/ and output/ live there); ``None`` runs the root's own folders (older hosts).
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path


def _die_with_parent() -> None:
    """Linux: the server gets SIGTERM when the process that started it dies (even if it is killed)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prompt_reply(text: str) -> dict:
    """The body of a /prompt answer; older hosts answer an unknown node type with plain text (HTTP 500)."""
    try:
        return json.loads(text or "{}")
    except json.JSONDecodeError:
        return {"text": text}


class ComfyProcess:
    def __init__(self, root, base_dir=None, python=None, log_path=None, extra_args=(), env=None):
        self.root = Path(root)
        self.base_dir = Path(base_dir) if base_dir else None
        self.python = python or sys.executable
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(log_path) if log_path else Path(tempfile.gettempdir()) / f"comfyui-{self.port}.log"
        self.extra_args = list(extra_args)
        self.env = dict(env or {})
        self.proc = None
        self._log = None

    def start(self, timeout: float = 120.0, extra_args=()):
        """Start the server and wait until it answers (:meth:`launch` then :meth:`wait_ready`)."""
        self.launch(extra_args)
        return self.wait_ready(timeout)

    def launch(self, extra_args=()):
        """Start the server process and return at once (it is ready once :meth:`wait_ready` returns)."""
        args = [self.python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
                *self.extra_args, *extra_args]
        if self.base_dir is not None:
            args += ["--base-directory", str(self.base_dir)]
        env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"), PYTHONUNBUFFERED="1", **self.env)
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(args, cwd=self.root, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        return self

    def wait_ready(self, timeout: float = 120.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited at start-up:\n{self.log()}")
            try:
                self.get("/object_info")
                return self
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.5)
        raise RuntimeError(f"ComfyUI did not answer within {timeout} s:\n{self.log()}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log:
            self._log.close()
            self._log = None

    def __enter__(self):
        return self.start() if self.proc is None else self

    def __exit__(self, *exc):
        self.stop()

    def log(self, tail: int = 6000) -> str:
        return self.log_path.read_text(errors="replace")[-tail:]

    def get(self, path: str):
        with urllib.request.urlopen(self.url + path, timeout=60) as r:
            return json.loads(r.read())

    def post_prompt(self, prompt: dict, client_id: str = "personalvideo"):
        """POST /prompt; returns (http status, json body). A rejected prompt gives 400 and ``node_errors``."""
        data = json.dumps({"prompt": prompt, "client_id": client_id}).encode()
        req = urllib.request.Request(self.url + "/prompt", data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, prompt_reply(e.read().decode(errors="replace"))

    def wait(self, prompt_id: str, timeout: float = 300.0) -> dict:
        """The /history entry of a prompt once it has outputs or has failed."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                history = self.get(f"/history/{prompt_id}")
            except (TimeoutError, urllib.error.URLError, ConnectionError) as e:  # a busy server: ask again
                if self.proc.poll() is not None:
                    raise RuntimeError(f"ComfyUI died:\n{self.log()}") from e
                time.sleep(1.0)
                continue
            entry = history.get(prompt_id)
            if entry and (entry.get("outputs") or entry.get("status", {}).get("status_str") == "error"
                          or entry.get("status", {}).get("completed")):
                return entry
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI died:\n{self.log()}")
            time.sleep(0.5)
        raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout} s:\n{self.log()}")
