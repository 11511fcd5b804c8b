"""Every vendor kind behind the OpenAI API, driven with the official `openai` SDK.

Each public model routes to one mock vendor speaking that vendor's real wire format; the client
must not be able to tell which one answered.
"""

import concurrent.futures
import json

import httpx
import openai
import pytest

# public model -> the vendor name the mock puts in its replies
VENDORS = {
    "gpt-4o-mini": "openai",
    "claude": "anthropic",
    "qwen": "dashscope",
    "ernie": "qianfan",
    "gemini": "gemini",
}
MODELS = list(VENDORS)
USER = [{"role": "user", "content": "Hello there, gateway"}]
WEATHER = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
                       "required": ["city", "unit"]},
    },
}]


def say(directive):
    return [{"role": "user", "content": f"Hello there [[mock {directive}]]"}]


@pytest.mark.parametrize("model", MODELS)
def test_plain_chat(gateway, model):
    r = gateway.client().chat.completions.create(model=model, messages=USER)
    assert r.choices[0].message.content == f"Mock {VENDORS[model]} reply to: Hello there, gateway"
    assert r.choices[0].finish_reason == "stop"
    assert r.model == model
    # The mock counts words: 3 in the prompt, 7 in the reply.
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (3, 7, 10)


@pytest.mark.parametrize("model", MODELS)
def test_streaming_with_usage(gateway, model):
    chunks = list(gateway.client().chat.completions.create(
        model=model, messages=USER, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == f"Mock {VENDORS[model]} reply to: Hello there, gateway"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    usage = chunks[-1].usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (3, 7, 10)
    assert len({c.id for c in chunks}) == 1


@pytest.mark.parametrize("model", MODELS)
def test_max_tokens_truncates_with_length(gateway, model):
    r = gateway.client().chat.completions.create(model=model, messages=USER, max_tokens=3)
    assert r.choices[0].message.content == f"Mock {VENDORS[model]} reply"
    assert r.choices[0].finish_reason == "length"


@pytest.mark.parametrize("model", MODELS)
def test_tool_call_round_trip(gateway, model):
    client = gateway.client()
    messages = [{"role": "user", "content": "What is the weather in Oslo?"}]
    r = client.chat.completions.create(model=model, messages=messages, tools=WEATHER)
    assert r.choices[0].finish_reason == "tool_calls"
    call = r.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "example", "unit": "c"}

    messages += [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump(exclude_none=True)]},
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
    ]
    r = client.chat.completions.create(model=model, messages=messages, tools=WEATHER)
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].message.content.startswith("The tool returned:")
    assert "sunny" in r.choices[0].message.content


@pytest.mark.parametrize("model", MODELS)
def test_tool_call_streaming(gateway, model):
    stream = gateway.client().chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Weather?"}], tools=WEATHER,
        tool_choice={"type": "function", "function": {"name": "get_weather"}}, stream=True)
    name, args, ids, finish = None, "", set(), None
    for c in stream:
        if not c.choices:
            continue
        for t in c.choices[0].delta.tool_calls or []:
            assert t.index == 0
            if t.id:
                ids.add(t.id)
            if t.function and t.function.name:
                name = t.function.name
            if t.function and t.function.arguments:
                args += t.function.arguments
        finish = c.choices[0].finish_reason or finish
    assert (name, json.loads(args), finish) == ("get_weather", {"city": "example", "unit": "c"}, "tool_calls")
    assert len(ids) == 1


@pytest.mark.parametrize("model", MODELS)
def test_vendor_rate_limit_is_429(gateway, model):
    with pytest.raises(openai.RateLimitError) as e:
        gateway.client().chat.completions.create(model=model, messages=say("status=429 retry_after=3"))
    assert e.value.status_code == 429
    if model != "ernie":  # Qianfan v1 reports limits as an error code in a 200 body, without a delay.
        assert e.value.response.headers["retry-after"] == "3"


@pytest.mark.parametrize("model", MODELS)
def test_vendor_overload_is_503(gateway, model):
    status = 529 if model == "claude" else 503
    with pytest.raises(openai.InternalServerError) as e:
        gateway.client().chat.completions.create(model=model, messages=say(f"status={status}"))
    assert e.value.status_code == 503


@pytest.mark.parametrize("model", MODELS)
def test_vendor_server_error_is_502(gateway, model):
    with pytest.raises(openai.InternalServerError) as e:
        gateway.client().chat.completions.create(model=model, messages=say("status=500"))
    assert e.value.status_code == 502


@pytest.mark.parametrize("model", MODELS)
def test_vendor_bad_request_is_400(gateway, model):
    with pytest.raises(openai.BadRequestError) as e:
        gateway.client().chat.completions.create(model=model, messages=say("status=400"))
    assert e.value.status_code == 400


@pytest.mark.parametrize("model", MODELS)
def test_vendor_garbage_is_502(gateway, model):
    with pytest.raises(openai.InternalServerError) as e:
        gateway.client().chat.completions.create(model=model, messages=say("garbage"))
    assert e.value.status_code == 502


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("fault", ["error_after=5", "reset_after=5", "malformed_after=5"])
def test_stream_failure_midway_raises(gateway, model, fault):
    received = []
    with pytest.raises(openai.APIError):
        for c in gateway.client().chat.completions.create(model=model, messages=say(f"words=8 {fault}"), stream=True):
            if c.choices and c.choices[0].delta.content:
                received.append(c.choices[0].delta.content)
    assert received, "what arrived before the failure was delivered"


def test_anthropic_request_shape(gateway, mock):
    gateway.client().chat.completions.create(
        model="claude", messages=[{"role": "system", "content": "Be terse."}] + USER, temperature=1.5)
    seen = mock.last("anthropic")
    assert seen["max_tokens"] == 4096, "Anthropic requires max_tokens: the gateway fills it"
    assert seen["texts"][0] == "Be terse.", "the system message is lifted to `system`"
    assert seen["headers"]["x-api-key"] == "sk-ant-mock"
    assert seen["headers"]["anthropic-version"] == "2023-06-01"


def test_parameters_a_vendor_cannot_honour_are_400(gateway):
    with pytest.raises(openai.BadRequestError) as e:
        gateway.client().chat.completions.create(model="claude", messages=USER, n=2)
    assert e.value.body["param"] == "n"
    image = [{"role": "user", "content": [{"type": "text", "text": "what?"},
                                          {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]
    with pytest.raises(openai.BadRequestError) as e:
        gateway.client().chat.completions.create(model="ernie", messages=image)
    assert "Image" in e.value.body["message"]


@pytest.mark.parametrize("model, vendor", [("claude", "anthropic"), ("gemini", "gemini"), ("qwen", "dashscope"),
                                           ("gpt-4o-mini", "openai")])
def test_images_reach_vendors_that_take_them(gateway, mock, model, vendor):
    image = [{"role": "user", "content": [{"type": "text", "text": "what is this"},
                                          {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]
    r = gateway.client().chat.completions.create(model=model, messages=image)
    assert r.choices[0].message.content.endswith("what is this")
    assert mock.last(vendor)["images"] == 1


def test_vendor_extras_survive(gateway, mock):
    gateway.client().chat.completions.create(model="qwen", messages=USER, extra_body={"enable_thinking": False})
    assert mock.last("dashscope")["path"] == "/api/v1/services/aigc/text-generation/generation"


def test_qianfan_needs_alternating_turns(gateway):
    merged = [{"role": "user", "content": "one"}, {"role": "user", "content": "two"}]
    r = gateway.client().chat.completions.create(model="ernie", messages=merged)
    assert r.choices[0].message.content == "Mock qianfan reply to: one two"
    with pytest.raises(openai.BadRequestError) as e:
        gateway.client().chat.completions.create(
            model="ernie", messages=[{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}])
    assert e.value.body["param"] == "messages"


def test_qianfan_token_refresh_under_concurrency(gateway, mock):
    client = gateway.client()
    client.chat.completions.create(model="ernie", messages=USER)
    before = mock.stats("qianfan")["token_fetches"]
    httpx.post(mock.url("qianfan") + "/__mock/qianfan/expire").raise_for_status()

    def one(i):
        r = client.chat.completions.create(model="ernie", messages=[{"role": "user", "content": f"request {i}"}])
        return r.choices[0].message.content

    with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
        replies = list(pool.map(one, range(50)))
    assert replies == [f"Mock qianfan reply to: request {i}" for i in range(50)]
    assert mock.stats("qianfan")["token_fetches"] == before + 1, "one token fetch for one expiry"


def test_vendor_secrets_never_reach_the_client(gateway):
    for model in MODELS:
        try:
            gateway.client().chat.completions.create(model=model, messages=say("status=401"))
        except openai.APIStatusError as e:
            text = e.response.text
            for secret in ["sk-ant-mock", "sk-mock-dashscope", "mock-qianfan-sk", "mock-gemini-key", "sk-mock-openai"]:
                assert secret not in text
