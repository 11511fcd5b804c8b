"""The OpenAI Agents SDK (`openai-agents`), which speaks the Responses API, against every vendor
kind: an agent with a function tool completes the round trip (the SDK runs the tool the model
called and sends its result back), streamed too, and a run continues an earlier one by
`previous_response_id`, which the gateway's stored responses serve on any vendor."""

import asyncio

import openai
import pytest
from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled

from conftest import DEMO_KEY
from test_responses import MODELS

# The SDK would otherwise send its traces to OpenAI's servers.
set_tracing_disabled(True)

CALLS = []


@function_tool
def get_weather(city: str) -> str:
    """The weather for a city."""
    CALLS.append(city)
    return f"sunny in {city}"


def agent(gateway, model):
    client = openai.AsyncOpenAI(base_url=gateway.base_url + "/v1", api_key=DEMO_KEY, max_retries=0)
    return Agent(name="forecaster", instructions="Answer with the tools.", tools=[get_weather],
                 model=OpenAIResponsesModel(model=model, openai_client=client))


def expected(model):
    # Gemini takes a function's result as an object: the text goes as {"content": ...}.
    text = "sunny in example"
    return f'The tool returned: {{"content":"{text}"}}' if MODELS[model] == "gemini" else f"The tool returned: {text}"


@pytest.mark.parametrize("model", MODELS)
def test_an_agent_runs_its_function_tool_on_every_vendor_kind(gateway, model):
    CALLS.clear()
    result = asyncio.run(Runner.run(agent(gateway, model), "What is the weather in Paris?"))
    assert CALLS == ["example"]
    assert result.final_output == expected(model)
    kinds = [item.type for item in result.new_items]
    assert kinds == ["tool_call_item", "tool_call_output_item", "message_output_item"], kinds
    usage = result.context_wrapper.usage
    assert usage.requests == 2 and usage.output_tokens > 0
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens


@pytest.mark.parametrize("model", ["claude", "gemini", "qwen"])
def test_a_streamed_run_and_a_run_continued_by_previous_response_id(gateway, mock, model):
    async def go():
        a = agent(gateway, model)
        streamed = Runner.run_streamed(a, "What is the weather in Paris?")
        deltas = [e.data.delta async for e in streamed.stream_events()
                  if e.type == "raw_response_event" and e.data.type == "response.output_text.delta"]
        assert "".join(deltas) == streamed.final_output == expected(model)
        follow = await Runner.run(a, "Thanks, and tomorrow?", previous_response_id=streamed.last_response_id)
        return follow

    CALLS.clear()
    follow = asyncio.run(go())
    assert follow.final_output == expected(model) and CALLS == ["example", "example"]
    # The vendor got the first run's whole conversation from the gateway's store.
    texts = mock.last(MODELS[model])["texts"]
    assert texts.index("What is the weather in Paris?") < texts.index(expected(model)) \
        < texts.index("Thanks, and tomorrow?"), texts
