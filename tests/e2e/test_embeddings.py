"""Embeddings: passed through to OpenAI-speaking vendors and cached like chat answers; in each
vendor's batch size to DashScope, Qianfan v1 and Gemini, order kept; a vendor kind without
embeddings is a 400 naming the model."""

import base64
import struct

import httpx
import openai
import pytest

from conftest import DEMO_KEY, gateway_of, mock_providers


def config(mock):
    def make(port, metrics):
        return f"""
server: {{listen: ["127.0.0.1:{port}"]}}
metrics: {{listen: "127.0.0.1:{metrics}"}}
providers:
{mock_providers(mock, "openai", "anthropic", "dashscope", "qianfan", "gemini")}
models:
  text-embedding-v3: {{targets: [{{provider: dashscope, model: text-embedding-v3}}], retry: {{attempts: 1}}}}
  embedding-v1: {{targets: [{{provider: qianfan, model: embedding-v1}}], retry: {{attempts: 1}}}}
  gemini-embedding-001: {{targets: [{{provider: gemini, model: gemini-embedding-001}}], retry: {{attempts: 1}}}}
  text-embedding-3-small:
    targets: [{{provider: openai, model: text-embedding-3-small}}]
    cache: {{ttl: 10m}}
  claude: {{targets: [{{provider: anthropic, model: claude-x}}]}}
keys: [{{name: all, key: {DEMO_KEY}}}]
"""
    return make


gw = gateway_of(config)


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


TRANSLATED = [("text-embedding-v3", "dashscope", 10), ("embedding-v1", "qianfan", 16),
              ("gemini-embedding-001", "gemini", 100)]


@pytest.mark.parametrize("model,vendor,batch", TRANSLATED)
def test_translated_vendors_batch_keep_order_and_count_usage(gw, mock, model, vendor, batch):
    client = gw.client()
    texts = [f"text number {i}" for i in range(batch * 2 + 3)]
    mock.reset(vendor)
    r = client.embeddings.create(model=model, input=texts)
    assert r.model == model and [d.index for d in r.data] == list(range(len(texts)))
    calls = mock.stats(vendor)["requests"]
    assert calls >= 3  # split into the vendor's batch size (Qianfan adds a token fetch)
    alone = client.embeddings.create(model=model, input=texts[batch + 1])
    assert alone.data[0].embedding == r.data[batch + 1].embedding
    assert r.usage.prompt_tokens == (0 if vendor == "gemini" else 3 * len(texts))
    raw = httpx.post(gw.base_url + "/v1/embeddings", json={"model": model, "input": texts[:2],
                     "encoding_format": "base64"}, headers={"authorization": f"Bearer {DEMO_KEY}"})
    floats = struct.unpack(f"<{len(r.data[0].embedding)}f",
                           base64.b64decode(raw.json()["data"][0]["embedding"]))
    assert list(floats) == pytest.approx(r.data[0].embedding)


def test_dimensions_go_to_vendors_that_take_them(gw):
    client = gw.client()
    assert len(client.embeddings.create(model="text-embedding-v3", input="x", dimensions=64).data[0].embedding) == 64
    assert len(client.embeddings.create(model="gemini-embedding-001", input="x", dimensions=16).data[0].embedding) == 16
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model="embedding-v1", input="x", dimensions=16)
    assert e.value.body["param"] == "dimensions"


@pytest.mark.parametrize("model,vendor,_batch", TRANSLATED)
def test_vendor_errors_reach_the_client_as_openai_errors(gw, mock, model, vendor, _batch):
    client = gw.client()
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model=model, input=["[[mock status=400]] bad"])
    mock.set_fault(vendor, "status=500", times=1)
    try:
        with pytest.raises(openai.APIStatusError) as e:
            client.embeddings.create(model=model, input="x")
        assert e.value.status_code >= 500 and e.value.body["type"] != "invalid_request_error"
    finally:
        mock.clear_fault(vendor)
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model=model, input=[[1, 2, 3]])
    assert e.value.body["param"] == "input"
