"""The official `openai` SDK, sync and async, against Tollgate and its built-in mock provider."""

import json
import time

import openai
import pytest

from conftest import KEY, MAX_REQUEST_BYTES

MESSAGES = [{"role": "user", "content": "Say something about gateways."}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city", "days"],
        },
    },
}


def test_chat_non_stream(client):
    raw = client.chat.completions.with_raw_response.create(model="demo-fast", messages=MESSAGES)
    assert raw.headers["x-tollgate-provider"] == "mock"
    assert raw.headers["x-tollgate-model"] == "mock-fast"
    assert raw.headers["x-request-id"]
    resp = raw.parse()
    assert resp.object == "chat.completion"
    assert resp.choices[0].message.content.startswith("Mock answer")
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage.prompt_tokens > 0
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens


def test_chat_is_deterministic_and_respects_max_tokens(client):
    a = client.chat.completions.create(model="demo-fast", messages=MESSAGES)
    b = client.chat.completions.create(model="demo-fast", messages=MESSAGES)
    assert a.choices[0].message.content == b.choices[0].message.content
    short = client.chat.completions.create(model="demo-fast", messages=MESSAGES, max_tokens=3)
    assert short.choices[0].finish_reason == "length"
    assert short.usage.completion_tokens == 3


def test_chat_stream_arrives_incrementally(client):
    arrivals = []
    usage = None
    stream = client.chat.completions.create(
        model="demo-fast", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    text = ""
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.monotonic())
            text += chunk.choices[0].delta.content
    assert text.startswith("Mock answer")
    assert len(arrivals) >= 8
    # The mock waits 50 ms between chunks; a buffering gateway would deliver them together.
    assert arrivals[-1] - arrivals[0] >= 0.25, arrivals
    assert usage is not None and usage.completion_tokens > 0


def test_stream_text_matches_non_stream_text(client):
    full = client.chat.completions.create(model="demo-fast", messages=MESSAGES).choices[0].message.content
    streamed = "".join(
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(model="demo-fast", messages=MESSAGES, stream=True)
        if c.choices
    )
    assert streamed == full


async def test_async_chat_and_stream(aclient):
    resp = await aclient.chat.completions.create(model="demo-fast", messages=MESSAGES)
    assert resp.choices[0].message.content.startswith("Mock answer")
    chunks = [c async for c in await aclient.chat.completions.create(model="demo-fast", messages=MESSAGES, stream=True)]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == resp.choices[0].message.content


def test_models_list_and_retrieve(client):
    ids = {m.id for m in client.models.list()}
    assert {"demo-fast", "demo-embed"} <= ids
    assert client.models.retrieve("demo-fast").id == "demo-fast"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_tool_call(client):
    resp = client.chat.completions.create(
        model="demo-fast", messages=MESSAGES, tools=[WEATHER_TOOL], tool_choice="required"
    )
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert set(json.loads(call.function.arguments)) == {"city", "days"}


def test_streamed_tool_call_reassembles(client):
    stream = client.chat.completions.create(
        model="demo-fast",
        messages=MESSAGES,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        stream=True,
    )
    name, args, finish = None, "", None
    for chunk in stream:
        if not chunk.choices:
            continue
        for tc in chunk.choices[0].delta.tool_calls or []:
            name = name or tc.function.name
            args += tc.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    assert name == "get_weather"
    assert json.loads(args) == {"city": "mock", "days": 1}
    assert finish == "tool_calls"


def test_embeddings_base64_and_float(client):
    # The SDK asks for base64 by default and decodes it.
    resp = client.embeddings.create(model="demo-embed", input=["hello", "world"])
    assert len(resp.data) == 2
    assert len(resp.data[0].embedding) == 16
    assert resp.data[0].embedding != resp.data[1].embedding
    floats = client.embeddings.create(model="demo-embed", input="hello", encoding_format="float")
    assert floats.data[0].embedding == pytest.approx(resp.data[0].embedding, rel=1e-6)
    assert resp.usage.prompt_tokens > 0


def test_bad_request_400(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="demo-fast", messages=[])
    assert e.value.status_code == 400
    assert e.value.body["param"] == "messages"


def test_authentication_401(gateway):
    bad = openai.OpenAI(base_url=f"{gateway}/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as e:
        bad.chat.completions.create(model="demo-fast", messages=MESSAGES)
    assert e.value.code == "invalid_api_key"


def test_unknown_model_404(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="gpt-nope", messages=MESSAGES)
    assert e.value.code == "model_not_found"


def test_body_too_large_413(client):
    big = "x" * (MAX_REQUEST_BYTES + 1024)
    with pytest.raises(openai.APIStatusError) as e:
        client.chat.completions.create(model="demo-fast", messages=[{"role": "user", "content": big}])
    assert e.value.status_code == 413
    assert e.value.code == "request_too_large"
    # The gateway keeps serving after refusing a large body.
    assert client.chat.completions.create(model="demo-fast", messages=MESSAGES).choices


def test_key_is_never_echoed(gateway):
    bad = openai.OpenAI(base_url=f"{gateway}/v1", api_key="sk-secret-should-not-echo", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as e:
        bad.models.list()
    assert "sk-secret-should-not-echo" not in str(e.value.body)
    assert KEY not in str(e.value.body)
