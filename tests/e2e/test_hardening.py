"""Failing open and isolating: poison requests, panic mode, in-flight bounds, vendor numbers
that used to panic, replays of requests a vendor may have received."""

import concurrent.futures
import time

import httpx
import openai
import pytest

from conftest import DEMO_KEY, free_port, running_gateway

USER = [{"role": "user", "content": "Hello there"}]
POISON = [{"role": "user", "content": "this one breaks the vendor [[mock status=500]]"}]


def config(mock, closed_port):
    def make(port, metrics):
        return f"""
server: {{listen: ["127.0.0.1:{port}"], threads: 2}}
metrics: {{listen: "127.0.0.1:{metrics}"}}
providers:
  - name: primary
    kind: openai
    base_url: {mock.url("openai")}/v1
    api_key: sk-mock-openai
  - name: bounded
    kind: openai
    base_url: {mock.url("openai")}/v1
    api_key: sk-mock-openai
    max_in_flight: 3
  - name: secondary
    kind: openai_compatible
    base_url: {mock.url("dashscope")}/compatible-mode/v1
    api_key: sk-mock-dashscope
  - name: refusing
    kind: openai_compatible
    base_url: http://127.0.0.1:{closed_port}/v1
models:
  solo:
    targets: [{{provider: primary, model: gpt-4o-mini}}]
    retry: {{attempts: 3, backoff: 5ms}}
  hasty:
    targets: [{{provider: primary, model: gpt-4o-mini-hasty}}]
    retry: {{attempts: 3, backoff: 5ms}}
    timeouts: {{first_byte: 300ms}}
  with-refusing:
    targets:
      - {{provider: refusing, model: llama, priority: 0}}
      - {{provider: secondary, model: qwen-plus, priority: 1}}
    retry: {{attempts: 3, backoff: 5ms}}
  once:
    targets: [{{provider: primary, model: gpt-4o-mini}}]
    retry: {{attempts: 1}}
  bounded:
    targets: [{{provider: bounded, model: gpt-4o-mini}}]
    retry: {{attempts: 1}}
    timeouts: {{first_byte: 10s}}
keys: [{{name: all, key: {DEMO_KEY}}}]
"""
    return make


@pytest.fixture
def gw(mock):
    mock.clear_fault("openai")
    with running_gateway(config(mock, free_port())) as g:
        yield g
    mock.clear_fault("openai")


def test_two_poison_requests_do_not_take_a_model_down(gw):
    """Default breaker settings; each poison request is tried three times on the only target."""
    client = gw.client()
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="solo", messages=POISON)
    for i in range(20):
        r = client.chat.completions.create(model="solo", messages=[{"role": "user", "content": f"normal {i}"}])
        assert r.choices[0].message.content == f"Mock openai reply to: normal {i}"
    assert gw.metric("modelmux_breaker_state", provider="primary", vendor_model="gpt-4o-mini") == 0


def test_an_open_breaker_never_leaves_a_model_without_a_target(mock):
    """Panic mode: every target of the model is open, so the one whose cooldown ends first is
    tried all the same, and a vendor that answers keeps answering."""

    def make(port, metrics):
        return f"""
server: {{listen: ["127.0.0.1:{port}"]}}
metrics: {{listen: "127.0.0.1:{metrics}"}}
providers: [{{name: primary, kind: openai, base_url: "{mock.url("openai")}/v1", api_key: sk-mock-openai}}]
models: {{solo: {{targets: [{{provider: primary, model: gpt-4o-mini}}], retry: {{attempts: 1}}}}}}
breaker: {{consecutive_failures: 1, cooldown: 60s}}
keys: [{{name: all, key: {DEMO_KEY}}}]
"""
    with running_gateway(make) as gw:
        client = gw.client()
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="solo", messages=POISON)
        assert gw.metric("modelmux_breaker_state", provider="primary", vendor_model="gpt-4o-mini") == 1
        for _ in range(5):
            r = client.chat.completions.create(model="solo", messages=USER)
            assert r.choices[0].message.content.startswith("Mock openai")


def test_a_refusing_vendor_is_skipped_when_another_target_exists(gw):
    start = time.monotonic()
    r = gw.client().chat.completions.create(model="with-refusing", messages=USER)
    assert r.choices[0].message.content.startswith("Mock dashscope")
    assert time.monotonic() - start < 2


def test_a_hanging_only_target_fails_within_the_first_byte_bound(gw, mock):
    mock.set_fault("openai", "latency_ms=3000")
    start = time.monotonic()
    with pytest.raises(openai.APIStatusError) as e:
        gw.client().chat.completions.create(model="hasty", messages=USER)
    elapsed = time.monotonic() - start
    assert e.value.status_code == 504
    assert elapsed < 1.0, f"waited {elapsed:.2f}s for a vendor that does not answer"


def test_a_hanging_vendor_holds_no_more_than_the_in_flight_bound(gw, mock):
    mock.reset("openai")
    mock.set_fault("openai", "latency_ms=1500")

    def one(_):
        start = time.monotonic()
        r = httpx.post(gw.base_url + "/v1/chat/completions", timeout=10,
                       headers={"authorization": f"Bearer {DEMO_KEY}"},
                       json={"model": "bounded", "messages": USER})
        return r, time.monotonic() - start

    with concurrent.futures.ThreadPoolExecutor(max_workers=10) as pool:
        results = list(pool.map(one, range(10)))
    answered = [r for r, _ in results if r.status_code == 200]
    refused = [(r, t) for r, t in results if r.status_code == 503]
    assert len(answered) == 3, [r.status_code for r, _ in results]
    assert len(refused) == 7
    for r, took in refused:
        assert r.headers["retry-after"] == "1"
        assert r.json()["error"]["type"]
        assert took < 1.0, "refused at once, not after waiting"
    assert mock.stats("openai")["requests"] == 3


def test_a_huge_retry_after_is_answered_not_a_dropped_connection(gw, mock):
    mock.set_fault("openai", "status=429 retry_after=18446744073709551615", times=1)
    r = gw.post_raw("/v1/chat/completions", b'{"model": "solo", "messages": [{"role": "user", "content": "hi"}]}')
    assert r.status_code == 429
    assert r.json()["error"]["code"] is not None or r.json()["error"]["message"]
    assert 1 <= int(r.headers["retry-after"]) <= 86400


def test_a_huge_max_tokens_on_messages_is_served_or_refused(gw):
    r = httpx.post(gw.base_url + "/v1/messages", timeout=10,
                   headers={"x-api-key": DEMO_KEY, "anthropic-version": "2023-06-01"},
                   json={"model": "solo", "max_tokens": 18446744073709551615, "messages": USER})
    assert r.status_code in (200, 400), r.text
    r = httpx.post(gw.base_url + "/v1/messages", timeout=10,
                   headers={"x-api-key": DEMO_KEY},
                   json={"model": "solo", "max_tokens": 1e300, "messages": USER})
    assert r.status_code == 400
    assert r.json()["type"] == "error"


def test_wrong_types_on_messages_name_the_member(gw):
    r = httpx.post(gw.base_url + "/v1/messages", timeout=10,
                   headers={"x-api-key": DEMO_KEY},
                   json={"model": "solo", "max_tokens": 5, "temperature": "hot", "messages": USER})
    assert r.status_code == 400
    assert "temperature" in r.json()["error"]["message"]


def test_a_request_the_vendor_received_is_not_replayed(gw, mock):
    """The vendor reads the request on a pooled connection, then resets it: it may have done
    (and billed) the work, so the gateway does not send it again behind the client's back."""
    client = gw.client()
    client.chat.completions.create(model="once", messages=USER)  # pools a connection
    mock.reset("openai")
    mock.set_fault("openai", "reset_after=0", times=1)
    with pytest.raises(openai.APIStatusError) as e:
        client.chat.completions.create(model="once", messages=USER)
    assert e.value.status_code == 502
    assert mock.stats("openai")["requests"] == 1
