"""Fixtures for the SDK compatibility suite.

Each server (mock provider, gateway) runs as a child process bound to port 0; the
fixture reads its single ``listening on http://IP:PORT`` stdout line with a deadline
instead of sleeping, and terminates it on teardown.

Scopes: ``mock`` / ``gateway`` are per module (cheap, read-only tests share them);
``fresh_mock`` / ``fresh_gateway`` are per test, for tests that queue faults or read
``/_mock/requests`` and must not see other tests' traffic.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 5.0
# The provider key the gateway holds; clients send something else so a test can tell
# which key reached the mock.
MOCK_KEY = "sk-mock-provider-key-1234"
CLIENT_KEY = "anything"


def _target_dir() -> Path:
    env = os.environ.get("CARGO_TARGET_DIR")
    if env:
        path = Path(env)
        return path if path.is_absolute() else REPO_ROOT / path
    return REPO_ROOT / "target"


def binary(name: str) -> Path:
    path = _target_dir() / "debug" / name
    if sys.platform == "win32":
        path = path.with_suffix(".exe")
    if not path.is_file():
        pytest.exit(
            f"{path} is missing: build it first with `cargo build --workspace --bins`",
            returncode=2,
        )
    return path


@dataclass
class Server:
    """A running child process that announced its URL."""

    name: str
    proc: subprocess.Popen
    url: str
    stderr_path: Path
    extra: dict[str, Any] = field(default_factory=dict)

    def stderr_tail(self, chars: int = 4000) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=STOP_TIMEOUT_S)
        if self.proc.stdout:
            self.proc.stdout.close()
        self.stderr_path.unlink(missing_ok=True)


def start_server(
    name: str,
    args: list[str],
    env: dict[str, str] | None = None,
    cls: type[Server] = Server,
) -> Server:
    """Starts ``args`` and waits (bounded) for its ``listening on URL`` line."""
    stderr_file = tempfile.NamedTemporaryFile(
        prefix=f"sluice-{name}-", suffix=".log", delete=False
    )
    proc = subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=stderr_file,
        env={**os.environ, **(env or {})},
        text=True,
        cwd=REPO_ROOT,
    )
    stderr_file.close()
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, name=f"{name}-stdout", daemon=True).start()
    server = cls(name, proc, "", Path(stderr_file.name))
    deadline = time.monotonic() + READY_TIMEOUT_S
    seen: list[str] = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            server.stop()
            raise RuntimeError(
                f"{name} did not print `listening on` within {READY_TIMEOUT_S}s; "
                f"stdout={seen!r}\nstderr:\n{server.stderr_tail()}"
            )
        try:
            line = lines.get(timeout=remaining)
        except queue.Empty:
            continue
        if line is None:
            server.stop()
            raise RuntimeError(
                f"{name} exited (code {proc.poll()}) before it was ready; "
                f"stdout={seen!r}\nstderr:\n{server.stderr_tail()}"
            )
        seen.append(line)
        if line.startswith("listening on "):
            server.url = line.removeprefix("listening on ").strip().rstrip("/")
            return server


# ---------------------------------------------------------------------------
# Mock provider


class Mock(Server):
    """The mock provider plus helpers for its observation endpoints."""

    def push_faults(self, faults: list[str]) -> None:
        r = httpx.post(f"{self.url}/_mock/faults", json={"faults": faults}, timeout=5)
        r.raise_for_status()

    def clear_faults(self) -> None:
        httpx.delete(f"{self.url}/_mock/faults", timeout=5).raise_for_status()

    def requests(self, path: str | None = None) -> list[dict[str, Any]]:
        """Recorded API requests (oldest first), optionally only those for ``path``."""
        r = httpx.get(f"{self.url}/_mock/requests", timeout=5)
        r.raise_for_status()
        recorded = r.json()
        if path is not None:
            recorded = [req for req in recorded if req["path"] == path]
        return recorded

    def stats(self) -> dict[str, Any]:
        r = httpx.get(f"{self.url}/_mock/stats", timeout=5)
        r.raise_for_status()
        return r.json()

    def reset(self) -> None:
        httpx.post(f"{self.url}/_mock/reset", timeout=5).raise_for_status()


def start_mock() -> Mock:
    server = start_server(
        "mock",
        [str(binary("sluice-mock-provider")), "--listen", "127.0.0.1:0"],
        cls=Mock,
    )
    assert isinstance(server, Mock)
    return server


# ---------------------------------------------------------------------------
# Gateway


def gateway_config(mock_url: str) -> str:
    return f"""
[server]
listen = "127.0.0.1:0"

[routing]
max_retries = 2
backoff_base_ms = 10
backoff_max_ms = 50

[providers.oa]
kind = "openai"
base_url = "{mock_url}/v1"
keys = [{{ value = "env:MOCK_KEY" }}]
models = ["gpt-4o-mini", "text-embedding-3-small"]

[providers.an]
kind = "anthropic"
base_url = "{mock_url}"
keys = [{{ value = "env:MOCK_KEY" }}]
models = ["claude-haiku-4-5"]

[providers.ge]
kind = "gemini"
base_url = "{mock_url}/v1beta"
keys = [{{ value = "env:MOCK_KEY" }}]
models = ["gemini-2.5-flash"]

[aliases.default]
targets = [{{ model = "oa/gpt-4o-mini" }}]
fallbacks = ["an/claude-haiku-4-5"]
"""


def start_gateway(mock: Mock, tmp_dir: Path) -> Server:
    config = tmp_dir / "sluice.toml"
    config.write_text(gateway_config(mock.url))
    server = start_server(
        "gateway",
        [str(binary("sluice-gateway")), "serve", "--config", str(config)],
        env={"MOCK_KEY": MOCK_KEY, "RUST_LOG": os.environ.get("RUST_LOG", "info")},
    )
    server.extra["config"] = config
    return server


# ---------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def mock():
    server = start_mock()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway(mock, tmp_path_factory):
    server = start_gateway(mock, tmp_path_factory.mktemp("gateway"))
    yield server
    server.stop()


@pytest.fixture
def fresh_mock():
    server = start_mock()
    yield server
    server.stop()


@pytest.fixture
def fresh_gateway(fresh_mock, tmp_path):
    server = start_gateway(fresh_mock, tmp_path)
    yield server
    server.stop()


def openai_client(gw: Server) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=gw.url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=20.0
    )


def anthropic_client(gw: Server) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=gw.url + "/anthropic", api_key=CLIENT_KEY, max_retries=0, timeout=20.0
    )


@pytest.fixture(scope="module")
def oai(gateway):
    client = openai_client(gateway)
    yield client
    client.close()


@pytest.fixture(scope="module")
def ant(gateway):
    client = anthropic_client(gateway)
    yield client
    client.close()


@pytest.fixture
def fresh_oai(fresh_gateway):
    client = openai_client(fresh_gateway)
    yield client
    client.close()


@pytest.fixture
def fresh_ant(fresh_gateway):
    client = anthropic_client(fresh_gateway)
    yield client
    client.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On failure, attach the tail of the servers' stderr logs to the report."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    for name in ("fresh_gateway", "gateway", "fresh_mock", "mock"):
        server = item.funcargs.get(name)
        if isinstance(server, Server):
            report.sections.append((f"{name} stderr", server.stderr_tail(3000)))
