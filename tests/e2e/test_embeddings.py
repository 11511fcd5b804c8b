"""Embeddings to OpenAI-speaking vendors (passed through), cached like chat answers; a vendor
kind without embeddings here is a 400 naming the model."""

import httpx
import openai
import pytest

from conftest import DEMO_KEY, running_gateway


def config(mock):
    def make(port, metrics):
        return f"""
server: {{listen: ["127.0.0.1:{port}"]}}
metrics: {{listen: "127.0.0.1:{metrics}"}}
providers:
  - {{name: openai, kind: openai, base_url: "{mock.url("openai")}/v1", api_key: sk-mock-openai}}
  - {{name: anthropic, kind: anthropic, base_url: "{mock.url("anthropic")}", api_key: sk-ant-mock}}
models:
  text-embedding-3-small:
    targets: [{{provider: openai, model: text-embedding-3-small}}]
    cache: {{ttl: 10m}}
  claude: {{targets: [{{provider: anthropic, model: claude-x}}]}}
keys: [{{name: all, key: {DEMO_KEY}}}]
"""
    return make


@pytest.fixture(scope="module")
def gw(mock):
    with running_gateway(config(mock)) as g:
        yield g


def test_embeddings_with_the_openai_sdk_order_and_dimensions(gw):
    client = gw.client()
    r = client.embeddings.create(model="text-embedding-3-small", input=["first text", "second", "third one"])
    assert r.model == "text-embedding-3-small" and [d.index for d in r.data] == [0, 1, 2]
    assert all(len(d.embedding) == 8 for d in r.data)
    assert r.usage.prompt_tokens == 5
    again = client.embeddings.create(model="text-embedding-3-small", input="second", dimensions=4)
    assert len(again.data[0].embedding) == 4
    floats = client.embeddings.create(model="text-embedding-3-small", input="second", encoding_format="float")
    assert floats.data[0].embedding == r.data[1].embedding


def test_a_repeated_embedding_is_a_cache_hit(gw, mock):
    body = {"model": "text-embedding-3-small", "input": "cache me please", "encoding_format": "float"}
    h = {"authorization": f"Bearer {DEMO_KEY}"}
    first = httpx.post(gw.base_url + "/v1/embeddings", json=body, headers=h)
    before = mock.stats("openai")["requests"]
    second = httpx.post(gw.base_url + "/v1/embeddings", json=body, headers=h)
    assert first.headers["x-modelmux-cache"] == "miss" and second.headers["x-modelmux-cache"] == "hit"
    assert second.json() == first.json()
    assert mock.stats("openai")["requests"] == before


def test_a_vendor_without_embeddings_and_bad_input_are_400s(gw):
    client = gw.client()
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model="claude", input="x")
    assert e.value.body["param"] == "model" and "anthropic" in e.value.body["message"]
    r = httpx.post(gw.base_url + "/v1/embeddings", json={"model": "text-embedding-3-small"},
                   headers={"authorization": f"Bearer {DEMO_KEY}"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "input"
