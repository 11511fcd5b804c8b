"""`POST /v1/messages` driven with the official `anthropic` SDK, routed to any vendor."""

import anthropic
import httpx
import pytest

from conftest import DEMO_KEY, LIMITED_KEY

ROUTES = {"gpt-4o-mini": "openai", "gemini": "gemini", "claude": "anthropic", "qwen": "dashscope"}
TOOLS = [{"name": "get_weather", "description": "Weather for a city",
          "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]


def claude(gateway, key=DEMO_KEY, bearer=False):
    # The SDK sends `x-api-key` with api_key= and `Authorization: Bearer` with auth_token=.
    if bearer:
        return anthropic.Anthropic(base_url=gateway.base_url, auth_token=key, max_retries=0, timeout=30)
    return anthropic.Anthropic(base_url=gateway.base_url, api_key=key, max_retries=0, timeout=30)


@pytest.mark.parametrize("model", list(ROUTES))
@pytest.mark.parametrize("bearer", [False, True])
def test_messages_create(gateway, model, bearer):
    m = claude(gateway, bearer=bearer).messages.create(
        model=model, max_tokens=100, system="Be terse.",
        messages=[{"role": "user", "content": "Hello from Claude SDK"}])
    assert m.type == "message" and m.role == "assistant"
    assert m.content[0].text == f"Mock {ROUTES[model]} reply to: Hello from Claude SDK"
    assert m.stop_reason == "end_turn"
    assert (m.usage.input_tokens, m.usage.output_tokens) == (6, 8)
    assert m.model == model


@pytest.mark.parametrize("model", list(ROUTES))
def test_messages_stream(gateway, model):
    with claude(gateway).messages.stream(
            model=model, max_tokens=100, messages=[{"role": "user", "content": "Stream to me"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == f"Mock {ROUTES[model]} reply to: Stream to me"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 7


@pytest.mark.parametrize("model", ["gpt-4o-mini", "gemini"])
def test_messages_tool_use_round_trip(gateway, model):
    client = claude(gateway)
    messages = [{"role": "user", "content": "Weather in Oslo?"}]
    m = client.messages.create(model=model, max_tokens=100, tools=TOOLS, messages=messages)
    assert m.stop_reason == "tool_use"
    use = next(b for b in m.content if b.type == "tool_use")
    assert (use.name, use.input) == ("get_weather", {"city": "example"})
    messages += [
        {"role": "assistant", "content": [b.model_dump() for b in m.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}]},
    ]
    m = client.messages.create(model=model, max_tokens=100, tools=TOOLS, messages=messages)
    assert m.stop_reason == "end_turn"
    assert "sunny" in m.content[0].text


@pytest.mark.parametrize("model", ["gpt-4o-mini", "gemini", "claude"])
def test_messages_tool_use_streaming(gateway, model):
    with claude(gateway).messages.stream(
            model=model, max_tokens=100, tools=TOOLS, tool_choice={"type": "tool", "name": "get_weather"},
            messages=[{"role": "user", "content": "Weather?"}]) as stream:
        final = stream.get_final_message()
    use = next(b for b in final.content if b.type == "tool_use")
    assert (use.name, use.input) == ("get_weather", {"city": "example"})
    assert final.stop_reason == "tool_use"


def test_every_streamed_event_has_an_event_line(gateway):
    r = httpx.post(gateway.base_url + "/v1/messages", headers={"x-api-key": DEMO_KEY, "anthropic-version": "2023-06-01"},
                   json={"model": "gemini", "max_tokens": 50, "stream": True,
                         "messages": [{"role": "user", "content": "hi"}]})
    blocks = [b for b in r.text.split("\n\n") if b.strip()]
    assert blocks and all(b.startswith("event: ") for b in blocks), r.text


def test_messages_errors_are_anthropic_shaped(gateway):
    with pytest.raises(anthropic.AuthenticationError):
        claude(gateway, key="sk-nope-nope").messages.create(
            model="gpt-4o-mini", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.NotFoundError) as e:
        claude(gateway).messages.create(model="nope", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert e.value.body["type"] == "error"
    assert e.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.PermissionDeniedError):
        claude(gateway, key=LIMITED_KEY).messages.create(
            model="gemini", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.RateLimitError):
        claude(gateway).messages.create(
            model="gpt-4o-mini", max_tokens=10, messages=[{"role": "user", "content": "x [[mock status=429]]"}])
    r = httpx.post(gateway.base_url + "/v1/messages", headers={"x-api-key": DEMO_KEY},
                   json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 400
    assert r.json()["error"] == {"type": "invalid_request_error", "message": "max_tokens: Field required"}


def test_messages_stream_failure_is_an_error_event(gateway):
    with pytest.raises(anthropic.APIStatusError):
        with claude(gateway).messages.stream(
                model="gpt-4o-mini", max_tokens=100,
                messages=[{"role": "user", "content": "go [[mock words=8 error_after=4]]"}]) as stream:
            for _ in stream.text_stream:
                pass


def test_count_tokens_asks_anthropic_and_estimates_for_other_vendors(gateway, mock):
    client = anthropic.Anthropic(base_url=gateway.base_url, api_key=DEMO_KEY, max_retries=0)
    text = "count these words " * 50
    for model in ("qwen", "gemini"):
        r = client.messages.count_tokens(model=model, messages=[{"role": "user", "content": text}])
        assert r.input_tokens == len(text) // 4
    # Anthropic counts for its own models (the mock: a token a word, 150 here).
    r = client.messages.count_tokens(model="claude", messages=[{"role": "user", "content": text}],
                                     extra_headers={"anthropic-beta": "token-counting-2024-11-01"})
    assert r.input_tokens == 150
    seen = mock.last("anthropic")
    assert seen["path"] == "/v1/messages/count_tokens"
    assert seen["headers"]["anthropic-beta"] == "token-counting-2024-11-01"

    with pytest.raises(anthropic.NotFoundError):
        client.messages.count_tokens(model="no-such-model", messages=[{"role": "user", "content": "x"}])


def test_models_are_listed_in_anthropics_shape_for_its_clients(gateway):
    client = anthropic.Anthropic(base_url=gateway.base_url, api_key=DEMO_KEY, max_retries=0)
    models = list(client.models.list())
    assert {"claude", "qwen", "gpt-4o-mini"} <= {m.id for m in models}
    assert all(m.type == "model" and m.display_name == m.id and m.created_at for m in models)
    one = client.models.retrieve("qwen")
    assert one.id == "qwen" and one.type == "model"
    # Without anthropic-version, the OpenAI shape as before.
    plain = httpx.get(gateway.base_url + "/v1/models", headers={"authorization": f"Bearer {DEMO_KEY}"}).json()
    assert plain["object"] == "list"


# What Claude Code sends (2.1): system turns inside `messages`, thinking blocks with signatures,
# cache_control on blocks, adaptive thinking, output_config, context_management, and members
# the gateway has never heard of.
CLAUDE_CODE_BODY = {
    "model": "claude", "max_tokens": 512, "stream": False,
    "system": [{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}],
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "List the files",
                                      "cache_control": {"type": "ephemeral"}}]},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "I should call ls.", "signature": "EqQBCkYIBxgCKkD=="},
            {"type": "tool_use", "id": "toolu_01", "name": "Bash", "input": {"command": "ls"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": "a.txt"}]},
        {"role": "system", "content": "The user switched to plan mode."},
        {"role": "user", "content": [{"type": "text", "text": "And now?"}]}],
    "tools": [{"name": "Bash", "input_schema": {"type": "object"}}, {"type": "web_search_20250305", "name": "web_search"}],
    "thinking": {"type": "adaptive"}, "output_config": {"effort": "medium"},
    "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
    "metadata": {"user_id": "{\"device_id\":\"d1\",\"session_id\":\"s1\"}"},
    "a_member_from_next_year": {"x": [1, 2]},
}


BETAS = "interleaved-thinking-2025-05-14,context-management-2025-06-27,mid-conversation-system-2026-04-07"


@pytest.mark.parametrize("stream", [False, True])
def test_claude_codes_body_reaches_anthropic_untouched_but_for_the_model(gateway, mock, stream):
    import json
    body = dict(CLAUDE_CODE_BODY, stream=stream)
    sent = json.dumps(body, separators=(",", ":")).encode()
    r = httpx.post(gateway.base_url + "/v1/messages?beta=true", content=sent, timeout=30,
                   headers={"x-api-key": DEMO_KEY, "anthropic-version": "2023-06-01",
                            "anthropic-beta": BETAS, "content-type": "application/json"})
    assert r.status_code == 200, r.text
    seen = mock.last("anthropic")
    expected = json.dumps(dict(body, model="claude-sonnet-4-20250514"), separators=(",", ":")).encode()
    import hashlib
    assert seen["body_sha256"] == hashlib.sha256(expected).hexdigest(), "the body was rewritten"
    assert seen["headers"]["anthropic-beta"] == BETAS
    if stream:
        events = [l[7:] for l in r.text.splitlines() if l.startswith("event: ")]
        assert events[0] == "message_start" and events[-1] == "message_stop", events
        start = json.loads(r.text.split("data: ", 1)[1].split("\n", 1)[0])
        assert start["message"]["model"] == "claude"
    else:
        # The mock calls the one tool it can (web_search runs at Anthropic, not here).
        assert r.json()["model"] == "claude" and r.json()["content"][0]["name"] == "Bash"


def test_claude_codes_body_on_other_vendors_drops_what_they_cannot_take(gateway, mock):
    import json
    body = CLAUDE_CODE_BODY | {"model": "qwen"}
    body["messages"][-1]["content"].append({"type": "brand_new_block", "payload": 1})
    r = httpx.post(gateway.base_url + "/v1/messages?beta=true", json=body, timeout=30,
                   headers={"x-api-key": DEMO_KEY, "anthropic-version": "2023-06-01", "anthropic-beta": BETAS})
    assert r.status_code == 200, r.text
    assert r.json()["model"] == "qwen" and r.json()["content"][0]["name"] == "Bash"
    seen = mock.last("dashscope")
    assert "anthropic-beta" not in seen["headers"]
    assert "The user switched to plan mode." in seen["texts"]
    assert seen["tools"] == ["Bash"]


def test_explicit_thinking_reaches_other_vendors_and_comes_back_as_a_thinking_block(gateway, mock):
    m = claude(gateway).messages.create(model="qwen", max_tokens=200, thinking={"type": "enabled", "budget_tokens": 2048},
                                        messages=[{"role": "user", "content": "Think"}])
    assert mock.last("dashscope")["thinking"] == "enable_thinking=true thinking_budget=2048"
    assert [b.type for b in m.content] == ["thinking", "text"]
    assert m.content[0].thinking == "Mock thinking it over." and m.content[1].text == "Mock dashscope reply to: Think"
    # Adaptive thinking leaves the choice to the model: other vendors get no control at all.
    claude(gateway).messages.create(model="qwen", max_tokens=200, thinking={"type": "adaptive"},
                                    messages=[{"role": "user", "content": "Think"}])
    assert mock.last("dashscope")["thinking"] is None


def test_a_chat_clients_reasoning_effort_becomes_anthropics_budget(gateway, mock):
    r = gateway.client().chat.completions.create(model="claude", reasoning_effort="high", max_tokens=100,
                                                 temperature=0.3, messages=[{"role": "user", "content": "Think hard"}])
    # The budget fits under max_tokens (raised to fit), and temperature is left out, as Anthropic requires.
    assert mock.last("anthropic")["thinking"] == "enabled budget_tokens=24576"
    assert r.choices[0].message.content == "Mock anthropic reply to: Think hard"
    assert r.choices[0].message.model_extra.get("reasoning_content") == "Mock thinking it over."
