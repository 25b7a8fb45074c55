"""Chaos tests for `examples/failover.toml`, with the official `openai` SDK as the client.

Two standalone mock providers play `primary` and `fallback`; faults are scripted through the
mock's control endpoint (`POST /mock/faults`), and its arrival log (`GET /mock/requests`) shows
what reached each upstream and when. Each test gets a fresh gateway, so circuits start closed.
"""

import json
import os
import subprocess
import tempfile
import time
import urllib.request

import openai
import pytest

from conftest import KEY, binary, free_port, serve_example

MESSAGES = [{"role": "user", "content": "Say something about resilience."}]


def http(method, url, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read() or b"null")


def wait_ready(url, proc):
    deadline = time.time() + 20
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"process exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"{url} did not become ready")


class Mock:
    def __init__(self):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([binary(), "mock", "--listen", f"127.0.0.1:{self.port}",
                                      "--chunks", "6", "--chunk-delay-ms", "5"],
                                     env={**os.environ, "RUST_LOG": "warn"})
        wait_ready(f"{self.url}/mock/requests", self.proc)

    def script(self, *steps):
        http("POST", f"{self.url}/mock/faults", {"steps": list(steps)})

    def arrivals(self):
        return [r for r in http("GET", f"{self.url}/mock/requests")["requests"]
                if r["path"].endswith("/chat/completions")]

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture
def chaos():
    primary, fallback = Mock(), Mock()
    tmp = tempfile.TemporaryDirectory()
    gw, port, admin = serve_example("failover.toml", tmp.name,
                                    TOLLGATE_PRIMARY_URL=f"{primary.url}/v1",
                                    TOLLGATE_FALLBACK_URL=f"{fallback.url}/v1")

    class Chaos:
        pass

    c = Chaos()
    c.primary, c.fallback = primary, fallback
    c.client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, max_retries=0)
    c.targets = lambda: http("GET", f"http://127.0.0.1:{admin}/admin/targets")
    yield c
    gw.terminate()
    gw.wait(timeout=10)
    primary.stop()
    fallback.stop()
    tmp.cleanup()


def ask(client, **kw):
    raw = client.chat.completions.with_raw_response.create(model="resilient", messages=MESSAGES, **kw)
    return raw.headers["x-tollgate-provider"], raw.parse()


def test_primary_down_circuit_opens_and_traffic_returns_after_recovery(chaos):
    chaos.primary.script({"status": 503})
    served = [ask(chaos.client)[0] for _ in range(30)]
    assert served == ["fallback"] * 30, "every request succeeded, through the fallback"
    hits = len(chaos.primary.arrivals())
    assert hits <= 5, f"the circuit opened within 5 failures ({hits} reached the primary)"
    assert chaos.targets()["primary/mock"]["circuit"] == "open"

    chaos.primary.script()  # recovered
    deadline = time.time() + 15  # the 5 s cool-down, then a probe
    while time.time() < deadline:
        if ask(chaos.client)[0] == "primary":
            break
        time.sleep(0.25)
    else:
        pytest.fail("traffic never returned to the primary")
    assert ask(chaos.client)[0] == "primary"
    assert chaos.targets()["primary/mock"]["circuit"] == "closed"


def test_flaky_primary_retry_budget_holds(chaos):
    chaos.primary.script({"status": 503, "fault-rate": 0.3})
    n = 100
    for _ in range(n):
        _, resp = ask(chaos.client)
        assert resp.choices[0].message.content
    attempts = len(chaos.primary.arrivals()) + len(chaos.fallback.arrivals())
    assert attempts <= 1.5 * n, f"{attempts} upstream attempts for {n} requests"


def test_slow_first_token_fails_over_within_the_ttft_deadline(chaos):
    chaos.primary.script({"ttft-ms": 3000})
    for _ in range(3):
        started = time.monotonic()
        raw = chaos.client.chat.completions.with_raw_response.create(
            model="resilient", messages=MESSAGES, stream=True)
        first = None
        for chunk in raw.parse():
            if chunk.choices and chunk.choices[0].delta.content:
                first = first or time.monotonic() - started
        assert raw.headers["x-tollgate-provider"] == "fallback"
        # ttft_timeout_ms = 500, plus a debug build and a shared CI machine.
        assert first is not None and first < 1.2, f"first token after {first:.3f}s"


def test_retry_after_is_honoured(chaos):
    chaos.primary.script({"times": 1, "status": 429, "retry-after": 1})
    provider, resp = ask(chaos.client)
    assert provider == "primary", "the wait fits max_retry_wait_ms, so the primary is retried"
    assert resp.choices[0].message.content
    hits = chaos.primary.arrivals()
    assert [h["status"] for h in hits] == [429, 200]
    gap_ms = hits[1]["at_ms"] - hits[0]["at_ms"]
    assert gap_ms >= 1000, f"retried after {gap_ms:.0f} ms, before the 1 s retry-after"


def test_context_too_long_moves_on_without_marking_the_primary(chaos):
    chaos.primary.script({"max-context": 50})
    long_prompt = [{"role": "user", "content": "word " * 400}]
    for _ in range(8):
        raw = chaos.client.chat.completions.with_raw_response.create(
            model="resilient", messages=long_prompt)
        assert raw.headers["x-tollgate-provider"] == "fallback"
    primary = chaos.targets()["primary/mock"]
    assert primary["circuit"] == "closed", "a context-length refusal is not an outage"
    assert primary["error_rate"] == 0
    assert ask(chaos.client)[0] == "primary", "short prompts still go to the primary"


def test_stream_reset_midway_reaches_the_client_as_an_error(chaos):
    chaos.primary.script({"reset-after": 5})
    stream = chaos.client.chat.completions.create(model="resilient", messages=MESSAGES, stream=True)
    text = ""
    with pytest.raises(openai.APIError) as e:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                text += chunk.choices[0].delta.content
    assert text, "content arrived before the reset"
    assert "upstream" in str(e.value)
