"""Cascades through the official `openai` SDK: a confident cheap answer is kept, an unsure one
escalates to the strong model, and a schema-breaking JSON answer escalates, each for stream and
non-stream clients (a kept answer reaches a streaming client re-emitted as SSE, which the SDK
must read like any stream). Also `examples/cascade.toml` with its Rhai policy.
"""

import json
import pathlib
import subprocess
import tempfile
import time
import urllib.request

import openai
import pytest

from conftest import KEY, binary, free_port, hash_key, serve_example

PROVIDERS = {
    "sure": {"x-mock-confidence": "0.95"},
    "unsure": {"x-mock-confidence": "0.2"},
    "offschema": {"x-mock-confidence": "0.95", "x-mock-off-schema": "1"},
    "strong": {},
}

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}},
          "required": ["city"], "additionalProperties": False}


def config(port, admin, tmp):
    out = [f"""
[server]
listen = "127.0.0.1:{port}"
admin_listen = "127.0.0.1:{admin}"
pid_file = "{tmp}/tollgate.pid"
upgrade_sock = "{tmp}/upgrade.sock"
"""]
    for name, headers in PROVIDERS.items():
        h = ", ".join(f'"{k}" = "{v}"' for k, v in headers.items())
        out.append(f'[providers.{name}]\nkind = "mock"\nheaders = {{ {h} }}\n'
                   f'[providers.{name}.mock]\nchunk_delay_ms = 5\nchunks = 6\n')
    for cheap in ("sure", "unsure", "offschema"):
        out.append(f"""
[[models.{cheap}.cascade.tiers]]
targets = ["{cheap}/small"]
threshold = 0.6
scorers = [{{ kind = "logprobs" }}, {{ kind = "json_schema" }}]

[[models.{cheap}.cascade.tiers]]
targets = ["strong/big"]
""")
    out.append(f'[[keys]]\nname = "demo"\nhash = "{hash_key(KEY)}"\ntenant = "demo"\n')
    return "\n".join(out)


@pytest.fixture(scope="module")
def client():
    tmp = tempfile.TemporaryDirectory()
    port, admin = free_port(), free_port()
    path = pathlib.Path(tmp.name) / "cascade.toml"
    path.write_text(config(port, admin, tmp.name))
    proc = subprocess.Popen([binary(), "serve", "--config", str(path)])
    deadline = time.time() + 20
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/readiness", timeout=1):
                break
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("tollgate did not become ready")
            time.sleep(0.05)
    yield openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, max_retries=0)
    proc.terminate()
    proc.wait(10)
    tmp.cleanup()


def ask(client, model, stream, **extra):
    raw = client.chat.completions.with_raw_response.create(
        model=model, stream=stream,
        messages=[{"role": "user", "content": "Which city should I visit?"}], **extra)
    cascade = raw.headers["x-tollgate-cascade"]
    served = raw.headers["x-tollgate-model"]
    answer = raw.parse()
    if not stream:
        return cascade, served, answer.choices[0].message.content, answer.choices[0].logprobs
    chunks = list(answer)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].choices[0].finish_reason == "stop" or chunks[-1].usage is not None
    logprobs = next((c.choices[0].logprobs for c in chunks
                     if c.choices and c.choices[0].logprobs is not None), None)
    return cascade, served, text, logprobs


@pytest.mark.parametrize("stream", [False, True])
def test_a_confident_cheap_answer_is_kept(client, stream):
    cascade, served, text, logprobs = ask(client, "sure", stream)
    assert cascade.startswith("tier=1/2 ") and cascade.endswith("escalated=false"), cascade
    assert served == "small"
    assert text.startswith("Mock answer:")
    assert logprobs is None, "logprobs asked for by the gateway are not passed on"


@pytest.mark.parametrize("stream", [False, True])
def test_an_unsure_answer_escalates_to_the_strong_model(client, stream):
    cascade, served, text, _ = ask(client, "unsure", stream)
    assert cascade.startswith("tier=2/2 ") and cascade.endswith("escalated=true"), cascade
    assert served == "big"
    assert text.startswith("Mock answer:")


@pytest.mark.parametrize("stream", [False, True])
def test_a_schema_breaking_answer_escalates(client, stream):
    fmt = {"type": "json_schema", "json_schema": {"name": "city", "schema": SCHEMA}}
    cascade, served, text, _ = ask(client, "offschema", stream, response_format=fmt)
    assert cascade.startswith("tier=2/2 score=0.00"), cascade
    assert served == "big"
    assert isinstance(json.loads(text)["city"], str)


def test_a_kept_stream_reports_usage_when_asked(client):
    raw = client.chat.completions.with_raw_response.create(
        model="sure", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "Which city should I visit?"}])
    chunks = list(raw.parse())
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    assert chunks[0].choices[0].delta.role == "assistant"


def test_the_example_cascade_answers_quizzes_and_reports_savings():
    tmp = tempfile.TemporaryDirectory()
    proc, port, admin = serve_example("cascade.toml", tmp.name, TOLLGATE_DATA_DIR=tmp.name)
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY,
                               max_retries=0)
        tiers = set()
        for i in range(12):
            raw = client.chat.completions.with_raw_response.create(
                model="assistant",
                messages=[{"role": "user", "content": f"What is {i} + {i * 3}?"}])
            tiers.add(raw.headers["x-tollgate-cascade"].split(" ")[0])
            assert raw.parse().choices[0].message.content.startswith("The answer is ")
        assert tiers == {"tier=1/2", "tier=2/2"}, "some kept, some escalated"
        raw = client.chat.completions.with_raw_response.create(
            model="assistant", messages=[{"role": "user", "content": "What is 1 + 1?"}],
            extra_headers={"x-tollgate-tags": "premium"})
        assert "x-tollgate-cascade" not in raw.headers, "premium skips the cascade"
        assert raw.headers["x-tollgate-model"] == "large"
        # The ledger is written in batches: wait for all 12 cascaded requests.
        row = {}
        for _ in range(100):
            req = urllib.request.Request(
                f"http://127.0.0.1:{admin}/admin/spend?by=model",
                headers={"authorization": "Bearer admin-demo-key-change-me"})
            with urllib.request.urlopen(req, timeout=5) as resp:
                report = json.load(resp)
            row = next((r for r in report["rows"] if r["group"] == "assistant"), {})
            if row.get("cascaded_requests") == 12:
                break
            time.sleep(0.1)
        assert row.get("cascaded_requests") == 12, row
        assert float(row["saved_usd"]) > 0, row
    finally:
        proc.terminate()
        proc.wait(10)
