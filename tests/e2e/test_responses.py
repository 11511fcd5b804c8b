"""OpenAI's Responses API in front of every vendor kind, with the official `openai` SDK:
`responses.create`, `responses.stream` (the whole event lifecycle, in order, numbered from 0),
a function tool round trip, hosted tools left out and named, and usage exact."""

import httpx
import openai
import pytest

from conftest import DEMO_KEY

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
