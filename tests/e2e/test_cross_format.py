"""Official SDKs across wire formats, official clients only:

- `openai` → Tollgate → the mock speaking Anthropic Messages and Gemini `generateContent`;
- `anthropic` → Tollgate `/v1/messages` → the mock speaking OpenAI and Anthropic.

The mock answers deterministically from the last user message in every format, so each answer
can be compared with the plain OpenAI one.
"""

import json

import anthropic
import pytest

from conftest import KEY

PROMPT = "Explain what an LLM gateway does."
MESSAGES = [{"role": "user", "content": PROMPT}]
MAX_TOKENS = 200
OPENAI_TOOL = {
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
ANTHROPIC_TOOL = {
    "name": "get_weather",
    "description": "Current weather for a city.",
    "input_schema": OPENAI_TOOL["function"]["parameters"],
}
NATIVE = {"demo-claude": "mock-anthropic", "demo-gemini": "mock-gemini"}


@pytest.fixture
def reference(client):
    """The answer through the OpenAI format end to end."""
    resp = client.chat.completions.create(model="demo-fast", messages=MESSAGES, max_tokens=MAX_TOKENS)
    return resp.choices[0].message.content


# --- openai SDK → mock Anthropic / mock Gemini ---------------------------------------------


@pytest.mark.parametrize("model", ["demo-claude", "demo-gemini"])
def test_openai_sdk_non_stream(client, reference, model):
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=MESSAGES, max_tokens=MAX_TOKENS
    )
    assert raw.headers["x-tollgate-provider"] == NATIVE[model]
    resp = raw.parse()
    assert resp.object == "chat.completion"
    assert resp.choices[0].message.content == reference
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage.prompt_tokens > 0 and resp.usage.completion_tokens > 0
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens


@pytest.mark.parametrize("model", ["demo-claude", "demo-gemini"])
def test_openai_sdk_stream(client, reference, model):
    stream = client.chat.completions.create(
        model=model,
        messages=MESSAGES,
        max_tokens=MAX_TOKENS,
        stream=True,
        stream_options={"include_usage": True},
    )
    text, finish, usage, pieces = "", None, None, 0
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        if chunk.choices:
            if chunk.choices[0].delta.content:
                text += chunk.choices[0].delta.content
                pieces += 1
            finish = chunk.choices[0].finish_reason or finish
    assert text == reference
    assert pieces > 1, "the answer streamed in several chunks"
    assert finish == "stop"
    assert usage is not None and usage.completion_tokens > 0


@pytest.mark.parametrize("model", ["demo-claude", "demo-gemini"])
def test_openai_sdk_stream_without_usage_gets_no_usage_chunk(client, model):
    chunks = list(client.chat.completions.create(model=model, messages=MESSAGES, stream=True))
    assert chunks and all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks), "no choices-less usage chunk"


@pytest.mark.parametrize("model", ["demo-claude", "demo-gemini"])
def test_openai_sdk_tool_call(client, model):
    resp = client.chat.completions.create(
        model=model, messages=MESSAGES, tools=[OPENAI_TOOL], tool_choice="required"
    )
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.id and call.type == "function"
    assert call.function.name == "get_weather"
    args = json.loads(call.function.arguments)
    assert set(args) == {"city", "days"}


@pytest.mark.parametrize("model", ["demo-claude", "demo-gemini"])
def test_openai_sdk_streamed_tool_call(client, model):
    stream = client.chat.completions.create(
        model=model,
        messages=MESSAGES,
        tools=[OPENAI_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        stream=True,
    )
    calls, finish, arg_deltas = {}, None, 0
    for chunk in stream:
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        for tc in delta.tool_calls or []:
            slot = calls.setdefault(tc.index, {"id": None, "name": None, "args": ""})
            if tc.id:
                slot["id"] = tc.id
            if tc.function and tc.function.name:
                slot["name"] = tc.function.name
            if tc.function and tc.function.arguments:
                slot["args"] += tc.function.arguments
                arg_deltas += 1
        finish = chunk.choices[0].finish_reason or finish
    assert list(calls) == [0]
    assert calls[0]["id"] and calls[0]["name"] == "get_weather"
    assert set(json.loads(calls[0]["args"])) == {"city", "days"}
    assert finish == "tool_calls"
    if model == "demo-claude":
        assert arg_deltas > 1, "Anthropic's input_json_delta pieces arrive as separate deltas"


@pytest.mark.parametrize("model", ["demo-claude", "demo-gemini"])
def test_openai_sdk_tool_result_round_trip(client, model):
    first = client.chat.completions.create(
        model=model, messages=MESSAGES, tools=[OPENAI_TOOL], tool_choice="required"
    )
    call = first.choices[0].message.tool_calls[0]
    follow_up = MESSAGES + [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": call.id, "type": "function",
                 "function": {"name": call.function.name, "arguments": call.function.arguments}}
            ],
        },
        {"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 21}'},
    ]
    resp = client.chat.completions.create(model=model, messages=follow_up, tools=[OPENAI_TOOL])
    assert resp.choices[0].finish_reason == "stop"
    assert resp.choices[0].message.content


# --- anthropic SDK → /v1/messages → mock OpenAI / mock Anthropic ------------------------------


@pytest.mark.parametrize("model", ["demo-fast", "demo-claude"])
def test_anthropic_sdk_non_stream(claude, reference, model):
    raw = claude.messages.with_raw_response.create(
        model=model, max_tokens=MAX_TOKENS, messages=MESSAGES, system="Be helpful."
    )
    assert raw.headers["x-request-id"]
    msg = raw.parse()
    assert msg.type == "message" and msg.role == "assistant"
    assert msg.id.startswith("msg_")
    assert [b.type for b in msg.content] == ["text"]
    assert msg.content[0].text == reference
    assert msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0


@pytest.mark.parametrize("model", ["demo-fast", "demo-claude"])
def test_anthropic_sdk_stream(claude, reference, model):
    with claude.messages.stream(model=model, max_tokens=MAX_TOKENS, messages=MESSAGES) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) > 1
    assert "".join(pieces) == reference
    assert final.content[0].text == reference
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0
    assert final.usage.input_tokens > 0, "usage reaches a Messages client from any upstream"


@pytest.mark.parametrize("model", ["demo-fast", "demo-claude"])
def test_anthropic_sdk_max_tokens_stops_with_max_tokens(claude, model):
    msg = claude.messages.create(model=model, max_tokens=3, messages=MESSAGES)
    assert msg.stop_reason == "max_tokens"
    assert msg.usage.output_tokens == 3


@pytest.mark.parametrize("model", ["demo-fast", "demo-claude"])
def test_anthropic_sdk_tools(claude, model):
    msg = claude.messages.create(
        model=model,
        max_tokens=MAX_TOKENS,
        messages=MESSAGES,
        tools=[ANTHROPIC_TOOL],
        tool_choice={"type": "any"},
    )
    assert msg.stop_reason == "tool_use"
    uses = [b for b in msg.content if b.type == "tool_use"]
    assert len(uses) == 1
    assert uses[0].name == "get_weather" and uses[0].id
    assert set(uses[0].input) == {"city", "days"}

    follow_up = MESSAGES + [
        {"role": "assistant", "content": [b.model_dump() for b in msg.content]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": uses[0].id, "content": "21 degrees"},
        ]},
    ]
    answer = claude.messages.create(
        model=model, max_tokens=MAX_TOKENS, messages=follow_up, tools=[ANTHROPIC_TOOL]
    )
    assert answer.stop_reason == "end_turn"
    assert answer.content[0].type == "text" and answer.content[0].text


@pytest.mark.parametrize("model", ["demo-fast", "demo-claude"])
def test_anthropic_sdk_streamed_tool_use(claude, model):
    with claude.messages.stream(
        model=model,
        max_tokens=MAX_TOKENS,
        messages=MESSAGES,
        tools=[ANTHROPIC_TOOL],
        tool_choice={"type": "tool", "name": "get_weather"},
    ) as stream:
        json_deltas = sum(1 for e in stream if e.type == "input_json")
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    use = next(b for b in final.content if b.type == "tool_use")
    assert use.name == "get_weather"
    assert set(use.input) == {"city", "days"}, "the SDK reassembled the streamed input"
    assert json_deltas > 1


def test_anthropic_sdk_errors_are_anthropic_shaped(gateway, claude):
    with pytest.raises(anthropic.NotFoundError) as e:
        claude.messages.create(model="no-such-model", max_tokens=10, messages=MESSAGES)
    assert e.value.body["type"] == "error"
    assert e.value.body["error"]["type"] == "not_found_error"
    bad = anthropic.Anthropic(base_url=gateway, api_key="sk-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as e:
        bad.messages.create(model="demo-fast", max_tokens=10, messages=MESSAGES)
    assert e.value.body["error"]["type"] == "authentication_error"
    assert "sk-wrong" not in json.dumps(e.value.body)
    with pytest.raises(anthropic.BadRequestError) as e:
        claude.messages.create(model="demo-fast", max_tokens=10, messages=[])
    assert e.value.body["error"]["type"] == "invalid_request_error"
