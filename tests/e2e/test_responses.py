"""OpenAI's Responses API in front of every vendor kind, with the official `openai` SDK:
`responses.create`, `responses.stream` (the whole event lifecycle, in order, numbered from 0),
a function tool round trip, hosted tools left out and named, and usage exact; stored responses
continued with `previous_response_id` on every vendor kind and across them, fetched, listed and
deleted by their own key only, stored before the reply ends, and shared by replicas through
Redis."""

import json

import httpx
import openai
import pytest

from conftest import DEMO_KEY, LIMITED_KEY, free_port, running_gateway
from test_fail_open import start_redis

# Public models of the session gateway, one per vendor kind, and the mock that answers.
MODELS = {"gpt-4o-mini": "openai", "claude": "anthropic", "qwen": "dashscope", "qwen-plus": "dashscope",
          "ernie": "qianfan", "ernie-4.0-8k": "qianfan", "gemini": "gemini"}
TOOLS = [{"type": "function", "name": "get_weather", "description": "Weather for a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]


@pytest.mark.parametrize("model", MODELS)
def test_a_response_on_every_vendor_kind(gateway, model):
    r = gateway.client().responses.create(model=model, input="Say hello", instructions="Be brief.")
    assert r.object == "response" and r.status == "completed" and r.id.startswith("resp_")
    assert r.output_text == f"Mock {MODELS[model]} reply to: Say hello"
    assert r.output[0].type == "message" and r.output[0].role == "assistant"
    u = r.usage
    assert u.input_tokens > 0 and u.output_tokens == 6 and u.total_tokens == u.input_tokens + u.output_tokens


@pytest.mark.parametrize("model", MODELS)
def test_a_streamed_response_has_the_whole_lifecycle_in_order(gateway, model):
    with gateway.client().responses.stream(model=model, input="Stream hello") as s:
        events = list(s)
        final = s.get_final_response()
    kinds = [e.type for e in events]
    deltas = kinds.count("response.output_text.delta")
    assert deltas >= 2, kinds
    assert kinds == (["response.created", "response.in_progress", "response.output_item.added",
                      "response.content_part.added"] + ["response.output_text.delta"] * deltas
                     + ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                        "response.completed"]), kinds
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == final.output_text == f"Mock {MODELS[model]} reply to: Stream hello"
    assert final.status == "completed" and final.usage.output_tokens == 6


@pytest.mark.parametrize("model", MODELS)
def test_a_function_tool_round_trip(gateway, model):
    c = gateway.client()
    question = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = c.responses.create(model=model, input=question, tools=TOOLS)
    calls = [o for o in first.output if o.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather", first.output
    assert calls[0].arguments == '{"city":"example"}'
    history = question + [o.model_dump(exclude_none=True) for o in first.output] + [
        {"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny, 21 C"}]
    second = c.responses.create(model=model, input=history, tools=TOOLS)
    # Gemini takes a function's result as an object: the text goes as {"content": ...}.
    expected = '{"content":"sunny, 21 C"}' if MODELS[model] == "gemini" else "sunny, 21 C"
    assert second.output_text == f"The tool returned: {expected}"


def test_hosted_tools_are_left_out_and_named(gateway):
    r = httpx.post(gateway.base_url + "/v1/responses", headers={"authorization": f"Bearer {DEMO_KEY}"},
                   json={"model": "qwen", "input": "hi", "tools": TOOLS + [{"type": "web_search"}]}, timeout=30)
    assert r.status_code == 200 and r.headers["x-modelmux-dropped-tools"] == "web_search"


def test_an_unknown_previous_response_is_a_404(gateway):
    with pytest.raises(openai.NotFoundError) as e:
        gateway.client().responses.create(model="qwen", input="hi", previous_response_id="resp_nope")
    assert e.value.body["code"] == "previous_response_not_found"


@pytest.mark.parametrize("model", MODELS)
def test_a_tool_round_trip_continued_by_previous_response_id(gateway, mock, model):
    c = gateway.client()
    first = c.responses.create(model=model, input="What is the weather in Paris?", tools=TOOLS,
                               instructions="Use the tools.")
    call = next(o for o in first.output if o.type == "function_call")
    second = c.responses.create(model=model, previous_response_id=first.id, tools=TOOLS,
                                input=[{"type": "function_call_output", "call_id": call.call_id,
                                        "output": "sunny, 21 C"}])
    expected = '{"content":"sunny, 21 C"}' if MODELS[model] == "gemini" else "sunny, 21 C"
    assert second.output_text == f"The tool returned: {expected}"
    assert second.previous_response_id == first.id and second.store is True
    seen = mock.last(MODELS[model])
    if MODELS[model] == "openai":
        # OpenAI holds the response itself: the body went there as it was, with the id.
        assert seen["path"] == "/v1/responses" and seen["texts"] == ["sunny, 21 C"], seen
    else:
        # Any other vendor got the whole conversation: the first question again, with the call.
        assert "What is the weather in Paris?" in seen["texts"], seen
    third = c.responses.create(model=model, previous_response_id=second.id, input="Thanks!")
    assert third.output_text == f"Mock {MODELS[model]} reply to: Thanks!"
    if MODELS[model] != "openai":
        texts = mock.last(MODELS[model])["texts"]
        assert "What is the weather in Paris?" in texts and f"The tool returned: {expected}" in texts


def test_a_conversation_moves_between_vendor_kinds(gateway, mock):
    c = gateway.client()
    r = c.responses.create(model="claude", input="My name is Ada.")
    for model in ["gemini", "qwen", "ernie", "gpt-4o-mini"]:
        r = c.responses.create(model=model, previous_response_id=r.id, input=f"Hello {model}")
        texts = mock.last(MODELS[model])["texts"]
        assert texts[0] == "My name is Ada." and texts[-1] == f"Hello {model}", texts
        assert "Mock anthropic reply to: My name is Ada." in texts


def test_a_streamed_response_is_stored_before_its_last_event_is_read(gateway):
    """The moment `response.completed` arrives, another connection can fetch and continue it."""
    headers = {"authorization": f"Bearer {DEMO_KEY}"}
    body = {"model": "qwen", "input": "Stream and store", "stream": True}
    with httpx.Client(base_url=gateway.base_url, headers=headers, timeout=30) as other, \
            httpx.stream("POST", gateway.base_url + "/v1/responses", headers=headers, json=body,
                          timeout=30) as s:
        for line in s.iter_lines():
            if line.startswith("data: ") and '"response.completed"' in line:
                done = json.loads(line[6:])["response"]
                got = other.get(f"/v1/responses/{done['id']}")
                assert got.status_code == 200, got.text
                assert got.json()["output"] == done["output"] and got.json()["status"] == "completed"
                nxt = other.post("/v1/responses", json={"model": "gemini", "input": "and then?",
                                                        "previous_response_id": done["id"]})
                assert nxt.status_code == 200, nxt.text
                break
        else:
            pytest.fail("no response.completed event")


def test_stored_responses_are_fetched_listed_and_deleted_by_their_own_key_only(gateway):
    mine = gateway.client()
    theirs = gateway.client(key=LIMITED_KEY)
    first = mine.responses.create(model="gpt-4o-mini", input="one", metadata={"ticket": "7"})
    second = mine.responses.create(model="gpt-4o-mini", input=[
        {"role": "user", "content": [{"type": "input_text", "text": "two"}]}], previous_response_id=first.id)
    got = mine.responses.retrieve(second.id)
    assert got.id == second.id and got.output_text == second.output_text and got.usage == second.usage
    assert first.metadata == {"ticket": "7"}
    items = mine.responses.input_items.list(second.id)
    # Newest first: this turn's input, the first reply, the first input.
    assert [i.type for i in items.data] == ["message", "message", "message"]
    assert [i.role for i in items.data] == ["user", "assistant", "user"]
    assert items.data[0].content[0].text == "two" and items.data[2].content[0].text == "one"
    assert all(i.id for i in items.data)
    asc = mine.responses.input_items.list(second.id, order="asc", limit=1)
    assert asc.data[0].content[0].text == "one" and asc.has_more
    for call in (lambda: theirs.responses.retrieve(second.id),
                 lambda: theirs.responses.input_items.list(second.id),
                 lambda: theirs.responses.delete(second.id),
                 lambda: theirs.responses.create(model="gpt-4o-mini", input="x", previous_response_id=second.id)):
        with pytest.raises(openai.NotFoundError):
            call()
    mine.responses.delete(second.id)
    with pytest.raises(openai.NotFoundError):
        mine.responses.retrieve(second.id)
    with pytest.raises(openai.NotFoundError):
        mine.responses.delete(second.id)
    assert mine.responses.retrieve(first.id).id == first.id


def test_store_false_keeps_nothing(gateway):
    c = gateway.client()
    r = c.responses.create(model="qwen", input="forget me", store=False)
    assert r.store is False
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(r.id)
    with pytest.raises(openai.NotFoundError):
        c.responses.create(model="qwen", input="x", previous_response_id=r.id)


def test_replicas_share_stored_responses_through_redis(mock):
    port = free_port()
    redis = start_redis(port)

    def config(p, metrics):
        return f"""
server: {{listen: ["127.0.0.1:{p}"], threads: 2}}
metrics: {{listen: "127.0.0.1:{metrics}"}}
responses: {{backend: redis, redis_url: "redis://127.0.0.1:{port}", ttl: 1h}}
providers:
  - {{name: anthropic, kind: anthropic, base_url: "{mock.url("anthropic")}", api_key: sk-ant-mock}}
  - {{name: gemini, kind: gemini, base_url: "{mock.url("gemini")}/v1beta", api_key: mock-gemini-key}}
models:
  claude: {{targets: [{{provider: anthropic, model: claude-x}}]}}
  gemini: {{targets: [{{provider: gemini, model: gemini-2.0-flash}}]}}
keys: [{{name: all, key: {DEMO_KEY}}}]
"""
    try:
        with running_gateway(config) as a, running_gateway(config) as b:
            first = a.client().responses.create(model="claude", input="Remember 42.")
            second = b.client().responses.create(model="gemini", input="What was it?",
                                                 previous_response_id=first.id)
            assert second.output_text == "Mock gemini reply to: What was it?"
            assert "Remember 42." in mock.last("gemini")["texts"]
            assert b.client().responses.retrieve(first.id).output_text == first.output_text
            a.client().responses.delete(first.id)
            with pytest.raises(openai.NotFoundError):
                b.client().responses.retrieve(first.id)
    finally:
        redis.kill()
        redis.wait()


def test_openai_gets_the_clients_own_body_and_its_events_come_back_as_sent(gateway, mock):
    """To a vendor serving the Responses API the body goes as it is (hosted tools, reasoning
    items, members the gateway has never heard of), only `model` replaced; the events come back
    with only `model` put back."""
    import hashlib
    body = {"model": "gpt-4o-mini", "stream": True, "store": True, "instructions": "Be brief.",
            "input": [{"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAAA=="},
                      {"role": "user", "content": [{"type": "input_text", "text": "Search the web"}]}],
            "tools": [{"type": "web_search"}], "include": ["reasoning.encrypted_content"],
            "reasoning": {"effort": "low", "summary": "auto"}, "prompt_cache_key": "k1",
            "a_member_from_next_year": {"x": 1}}
    sent = json.dumps(body, separators=(",", ":")).encode()
    r = httpx.post(gateway.base_url + "/v1/responses", content=sent, timeout=30,
                   headers={"authorization": f"Bearer {DEMO_KEY}", "content-type": "application/json"})
    assert r.status_code == 200 and "x-modelmux-dropped-tools" not in r.headers
    seen = mock.last("openai")
    expected = json.dumps(dict(body, model="gpt-4o-mini-2024-07-18"), separators=(",", ":")).encode()
    assert seen["path"] == "/v1/responses" and seen["body_sha256"] == hashlib.sha256(expected).hexdigest()
    events = [json.loads(l[6:]) for l in r.text.splitlines() if l.startswith("data: ")]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[-1]["type"] == "response.completed"
    models = {e["response"]["model"] for e in events if "response" in e}
    assert models == {"gpt-4o-mini"}, models
    done = events[-1]["response"]
    assert done["reasoning"] == {"effort": "low", "summary": "auto"} and done["id"].startswith("resp_mock")
    # Stored by the gateway too: fetched, and continued on another vendor with the whole history.
    assert gateway.client().responses.retrieve(done["id"]).output_text == "Mock openai reply to: Search the web"
    nxt = gateway.client().responses.create(model="claude", previous_response_id=done["id"], input="More")
    assert nxt.output_text == "Mock anthropic reply to: More"
    texts = mock.last("anthropic")["texts"]
    assert texts[-3:] == ["Search the web", "Mock openai reply to: Search the web", "More"], texts
    # Back to OpenAI: it does not hold the Anthropic turn, so it gets the whole conversation as chat.
    back = gateway.client().responses.create(model="gpt-4o-mini", previous_response_id=nxt.id, input="And?")
    assert back.output_text == "Mock openai reply to: And?"
    seen = mock.last("openai")
    assert seen["path"] == "/v1/chat/completions" and "Mock anthropic reply to: More" in seen["texts"]


def test_a_response_openai_holds_is_continued_there_by_id(gateway, mock):
    c = gateway.client()
    first = c.responses.create(model="gpt-4o-mini", input="Remember 7")
    assert first.model == "gpt-4o-mini" and first.id.startswith("resp_mock")
    second = c.responses.create(model="gpt-4o-mini", input="What was it?", previous_response_id=first.id)
    assert second.output_text == "Mock openai reply to: What was it?"
    assert mock.last("openai")["texts"] == ["What was it?"], "sent as it was, OpenAI holds the rest"
    with pytest.raises(openai.NotFoundError):
        c.responses.create(model="gpt-4o-mini", input="x", previous_response_id="resp_mock_unknown")


# Each vendor's thinking control for reasoning.effort "medium" (8,192 tokens where a budget is taken).
THINKING = {"claude": "enabled budget_tokens=8192", "qwen": "enable_thinking=true thinking_budget=8192",
            "gemini": '{"thinkingBudget":8192,"includeThoughts":true}'}


@pytest.mark.parametrize("model", THINKING)
def test_reasoning_effort_becomes_each_vendors_thinking_and_comes_back_as_a_summary(gateway, mock, model):
    c = gateway.client()
    r = c.responses.create(model=model, input="Think first", reasoning={"effort": "medium", "summary": "auto"},
                           max_output_tokens=100, temperature=0.5)
    assert mock.last(MODELS[model])["thinking"] == THINKING[model]
    assert [o.type for o in r.output] == ["reasoning", "message"]
    assert r.output[0].summary[0].text == "Mock thinking it over."
    assert r.output_text == f"Mock {MODELS[model]} reply to: Think first"
    assert r.reasoning.effort == "medium"
    # Thinking is output: 6 words and 4 tokens of thought; the vendors that count it apart say so.
    assert r.usage.output_tokens == 10
    assert r.usage.output_tokens_details.reasoning_tokens == (0 if model == "claude" else 4)
    with c.responses.stream(model=model, input="Think first", reasoning={"effort": "medium"}) as s:
        events = list(s)
        final = s.get_final_response()
    kinds = [e.type for e in events]
    assert kinds[2:6] == ["response.output_item.added", "response.reasoning_summary_part.added",
                          "response.reasoning_summary_text.delta", "response.reasoning_summary_text.done"], kinds
    assert kinds.index("response.reasoning_summary_part.done") < kinds.index("response.output_text.delta")
    assert final.output[0].summary[0].text == "Mock thinking it over." and final.output[1].type == "message"
    assert [e.sequence_number for e in events] == list(range(len(events)))


def test_reasoning_effort_none_switches_thinking_off(gateway, mock):
    r = gateway.client().responses.create(model="qwen", input="Quick", reasoning={"effort": "none"})
    assert mock.last("dashscope")["thinking"] == "enable_thinking=false"
    assert [o.type for o in r.output] == ["message"]
