"""A headless ComfyUI server on 127.0.0.1 with the pack linked into its custom_nodes."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import host


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ComfyServer:
    def __init__(self):
        self.root = host.host_root()
        self.base = host.server_base_dir()
        host.install_pack_link(self.base)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = host.scratch_dir() / f"server-{self.port}.log"
        self.proc = None

    @property
    def models(self) -> Path:
        return self.base / "models"

    @property
    def output(self) -> Path:
        return self.base / "output"

    def start(self, timeout: float = 120.0, extra_args=()) -> "ComfyServer":
        args = [sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port), *extra_args]
        if host.is_modern_host():
            args += ["--base-directory", str(self.base)]
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(args, cwd=self.root, stdout=self._log, stderr=subprocess.STDOUT, env=env)
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
        if self.proc:
            self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def get(self, path: str):
        with urllib.request.urlopen(self.url + path, timeout=30) as r:
            return json.loads(r.read())

    def post_prompt(self, prompt: dict):
        """POST /prompt; returns (http status, json body)."""
        data = json.dumps({"prompt": prompt, "client_id": "personalvideo-tests"}).encode()
        req = urllib.request.Request(self.url + "/prompt", data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def wait(self, prompt_id: str, timeout: float = 300.0) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            history = self.get(f"/history/{prompt_id}")
            if prompt_id in history and history[prompt_id].get("status", {}).get("completed", True) is not None:
                entry = history[prompt_id]
                if entry.get("outputs") or entry.get("status", {}).get("status_str") == "error":
                    return entry
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI died:\n{self.log()}")
            time.sleep(0.5)
        raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout} s:\n{self.log()}")
