"""Starts `tollgate serve` with the built-in mock provider for the official-SDK tests."""

import os
import pathlib
import socket
import subprocess
import tempfile
import time
import urllib.request

import anthropic
import openai
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
KEY = "sk-demo"
MAX_REQUEST_BYTES = 2 * 1024 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def binary() -> str:
    path = os.environ.get("TOLLGATE_BIN", str(ROOT / "target" / "debug" / "tollgate"))
    if not os.path.exists(path):
        pytest.exit(f"tollgate binary not found at {path}: run `cargo build -p tollgate-cli` first", 2)
    return path


def serve_example(name: str, tmp: str, **env):
    """Starts `tollgate serve` on `examples/NAME` with fresh ports, its pid file and upgrade
    socket in `tmp`, and `env` (e.g. upstream URLs). Returns (process, port, admin port) once
    it is ready."""
    port, admin = free_port(), free_port()
    full_env = {
        **os.environ,
        "RUST_LOG": "warn",
        "TOLLGATE_LISTEN": f"127.0.0.1:{port}",
        "TOLLGATE_ADMIN_LISTEN": f"127.0.0.1:{admin}",
        "TOLLGATE_PID_FILE": f"{tmp}/tollgate.pid",
        "TOLLGATE_UPGRADE_SOCK": f"{tmp}/upgrade.sock",
        **env,
    }
    proc = subprocess.Popen([binary(), "serve", "--config", str(ROOT / "examples" / name)],
                            env=full_env)
    deadline = time.time() + 20
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"tollgate exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/readiness", timeout=1):
                return proc, port, admin
        except OSError:
            time.sleep(0.05)
    pytest.fail("tollgate did not become ready")


def hash_key(key: str) -> str:
    out = subprocess.run([binary(), "hash-key", key], check=True, capture_output=True, text=True)
    return out.stdout.strip()


@pytest.fixture(scope="session")
def gateway():
    port, admin = free_port(), free_port()
    tmp = tempfile.TemporaryDirectory()
    config = pathlib.Path(tmp.name) / "tollgate.toml"
    config.write_text(
        f"""
[server]
listen = "127.0.0.1:{port}"
admin_listen = "127.0.0.1:{admin}"
pid_file = "{tmp.name}/tollgate.pid"
upgrade_sock = "{tmp.name}/upgrade.sock"

[limits]
max_request_bytes = {MAX_REQUEST_BYTES}

[providers.mock]
kind = "mock"

[providers.mock.mock]
chunk_delay_ms = 50
chunks = 8

[models.demo-fast]
targets = [{{ provider = "mock", model = "mock-fast" }}]

[models.demo-embed]
targets = [{{ provider = "mock", model = "mock-embed" }}]

# The same mock, spoken to in Anthropic's and Gemini's wire formats.
[providers.mock-anthropic]
kind = "mock"

[providers.mock-anthropic.mock]
wire = "anthropic"
chunk_delay_ms = 20
chunks = 8

[providers.mock-gemini]
kind = "mock"

[providers.mock-gemini.mock]
wire = "gemini"
chunk_delay_ms = 20
chunks = 8

[models.demo-claude]
targets = [{{ provider = "mock-anthropic", model = "claude-mock" }}]

[models.demo-gemini]
targets = [{{ provider = "mock-gemini", model = "gemini-mock" }}]

[[keys]]
name = "demo"
hash = "{hash_key(KEY)}"
tenant = "demo"
"""
    )
    proc = subprocess.Popen(
        [binary(), "serve", "--config", str(config)],
        env={**os.environ, "RUST_LOG": "warn"},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 20
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health/readiness", timeout=1) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if time.time() > deadline or proc.poll() is not None:
            proc.kill()
            pytest.exit("tollgate did not become ready", 2)
        time.sleep(0.05)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
    tmp.cleanup()


@pytest.fixture
def client(gateway):
    return openai.OpenAI(base_url=f"{gateway}/v1", api_key=KEY, max_retries=0)


@pytest.fixture
def aclient(gateway):
    return openai.AsyncOpenAI(base_url=f"{gateway}/v1", api_key=KEY, max_retries=0)


@pytest.fixture
def claude(gateway):
    """The official `anthropic` SDK, pointed at Tollgate's `/v1/messages`."""
    return anthropic.Anthropic(base_url=gateway, api_key=KEY, max_retries=0)
