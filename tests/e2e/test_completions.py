"""The legacy Completions API (seed 002's client): passed through to OpenAI-speaking vendors,
translated to chat for the others, streamed or not, with the openai SDK."""

import openai
import pytest


@pytest.mark.parametrize("model,vendor", [("gpt-4o-mini", "openai"), ("claude", "anthropic"), ("gemini", "gemini")])
def test_completions_streamed_and_not(gateway, mock, model, vendor):
    client = gateway.client()
    r = client.completions.create(model=model, prompt="Say hello", max_tokens=50)
    assert r.object == "text_completion" and r.model == model
    assert r.choices[0].text == f"Mock {vendor} reply to: Say hello"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.completion_tokens > 0
    if vendor == "openai":
        assert mock.last("openai")["path"] == "/v1/completions", "passed through, not translated"
    chunks = list(client.completions.create(model=model, prompt="Say hello", stream=True,
                                            stream_options={"include_usage": True}))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text.replace(" ", "") == f"Mock {vendor} reply to: Say hello".replace(" ", "")
    assert [c for c in chunks if c.choices][-1].choices[0].finish_reason == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_completions_errors_are_openai_shaped(gateway):
    client = gateway.client()
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="gpt-4o-mini", prompt=["one", "two"])
    assert e.value.body["param"] == "prompt"
    r = gateway.post_raw("/v1/completions", b'{"model": "gpt-4o-mini"}')
    assert r.status_code == 400 and r.json()["error"]["param"] == "prompt"
    r = gateway.post_raw("/v1/completions", b'{"model": "nope", "prompt": "x"}')
    assert r.status_code == 404
