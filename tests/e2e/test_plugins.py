"""`examples/plugins.toml` with the official `openai` SDK: Wasm plugins (the C examples) refuse
a request, redact one before the provider sees it, and cut a stream off with an SSE error
event the SDK raises.

Needs the example plugins built (`bash plugins/build.sh`; tests/run.sh does it).
"""

import json
import os
import tempfile
import urllib.request
from pathlib import Path

import openai
import pytest

from conftest import free_port, serve_example

PLUGINS = Path(os.environ.get("TOLLGATE_TEST_PLUGIN_DIR",
                              Path(__file__).resolve().parents[2] / "plugins" / "target"))

pytestmark = pytest.mark.skipif(
    not (PLUGINS / "c_keyword_guard.wasm").is_file(),
    reason="the example plugins are not built (bash plugins/build.sh)")


@pytest.fixture
def gateway():
    tmp = tempfile.TemporaryDirectory()
    mock_port = free_port()
    gw, port, _ = serve_example("plugins.toml", tmp.name,
                                TOLLGATE_MOCK_LISTEN=f"127.0.0.1:{mock_port}",
                                TOLLGATE_PLUGIN_DIR=str(PLUGINS))

    class Gateway:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-demo",
                               max_retries=0)

        @staticmethod
        def provider_saw():
            with urllib.request.urlopen(f"http://127.0.0.1:{mock_port}/mock/requests") as r:
                return json.loads(r.read())["requests"][-1]["body"]

    yield Gateway
    gw.terminate()
    gw.wait(timeout=10)
    tmp.cleanup()


def ask(client, content, **kw):
    return client.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": content}], **kw)


def test_a_plugin_refuses_with_403(gateway):
    with pytest.raises(openai.PermissionDeniedError) as refused:
        ask(gateway.client, "What is the status of Falcon?")
    assert refused.value.code == "plugin_denied"
    assert "keywords" in refused.value.message and "falcon" in refused.value.message


def test_a_plugin_redacts_before_the_provider_sees_it(gateway):
    reply = ask(gateway.client, "Tell me about Acme widgets")
    assert reply.choices[0].message.content
    assert gateway.provider_saw()["messages"][0]["content"] == "Tell me about [REDACTED] widgets"


def test_a_plugin_stops_a_stream_with_an_error_the_sdk_raises(gateway):
    with pytest.raises(openai.APIError) as stopped:
        for _ in ask(gateway.client, "Say something", stream=True):
            pass
    assert "keyword_guard" in str(stopped.value)
