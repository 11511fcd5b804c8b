"""Failover, retries, circuit breakers and cancellation, against the mock vendors' faults."""

import concurrent.futures
import time

import httpx
import openai
import pytest

from conftest import DEMO_KEY, running_gateway

USER = [{"role": "user", "content": "Hello there"}]


def config(mock):
    def make(port, metrics):
        return f"""
server: {{listen: ["127.0.0.1:{port}"], threads: 2}}
metrics: {{listen: "127.0.0.1:{metrics}"}}
providers:
  - name: primary
    kind: openai
    base_url: {mock.url("openai")}/v1
    api_key: sk-mock-openai
  - name: secondary
    kind: openai_compatible
    base_url: {mock.url("dashscope")}/compatible-mode/v1
    api_key: sk-mock-dashscope
models:
  ha:
    targets:
      - {{provider: primary, model: gpt-4o-mini, priority: 0}}
      - {{provider: secondary, model: qwen-plus, priority: 1}}
    retry: {{attempts: 3, backoff: 5ms, max_backoff: 20ms}}
    timeouts: {{first_byte: 300ms}}
  solo:
    targets: [{{provider: primary, model: gpt-4o-mini}}]
    retry: {{attempts: 3, backoff: 5ms, deadline: 10s}}
breaker:
  consecutive_failures: 3
  failure_rate: 0.05
  min_requests: 10
  window: 10s
  cooldown: 1s
  probes: 1
keys: [{{name: all, key: {DEMO_KEY}}}]
"""
    return make


@pytest.fixture(scope="module")
def ha(mock):
    with running_gateway(config(mock)) as g:
        yield g
    mock.clear_fault("openai")


def breaker_state(gw):
    return gw.metric("modelmux_breaker_state", provider="primary", vendor_model="gpt-4o-mini")


def settle(gw, mock):
    """Primary healthy again and its breaker closed."""
    mock.clear_fault("openai")
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            gw.client().chat.completions.create(model="solo", messages=USER)
        except openai.InternalServerError:
            pass  # still open: wait for the cooldown
        if breaker_state(gw) == 0:
            return
        time.sleep(0.3)
    raise AssertionError("the breaker did not close")


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("fault", ["status=500", "reset_after=0", "latency_ms=2000", "status=503", "status=429"])
def test_one_failing_target_never_fails_a_client(ha, mock, fault, stream):
    """1,000 requests in all (10 cases x 100), each must succeed for the client."""
    settle(ha, mock)
    mock.set_fault("openai", fault)
    client = ha.client()

    def one(i):
        messages = [{"role": "user", "content": f"request {i}"}]
        if stream:
            chunks = list(client.chat.completions.create(model="ha", messages=messages, stream=True))
            return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        return client.chat.completions.create(model="ha", messages=messages).choices[0].message.content

    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        replies = list(pool.map(one, range(100)))
    assert replies == [f"Mock dashscope reply to: request {i}" for i in range(100)]
    assert breaker_state(ha) in (1.0, 2.0), "the failing target's breaker opened"


def test_breaker_opens_skips_half_opens_and_closes(ha, mock):
    settle(ha, mock)
    mock.set_fault("openai", "status=500")
    client = ha.client()
    for _ in range(3):
        client.chat.completions.create(model="ha", messages=USER)
    assert breaker_state(ha) == 1, "open after 3 consecutive failures"

    mock.reset("openai")
    mock.set_fault("openai", "status=500")
    for _ in range(20):
        r = client.chat.completions.create(model="ha", messages=USER)
        assert r.choices[0].message.content.startswith("Mock dashscope")
    assert mock.stats("openai")["requests"] == 0, "an open breaker's target is skipped"

    mock.clear_fault("openai")
    time.sleep(1.1)  # the cooldown
    r = client.chat.completions.create(model="ha", messages=USER)
    assert r.choices[0].message.content.startswith("Mock openai"), "the half-open probe went to the primary"
    assert breaker_state(ha) == 0, "a successful probe closes it"
    for to in ("open", "half_open", "closed"):
        assert ha.metric("modelmux_breaker_transitions_total", provider="primary", vendor_model="gpt-4o-mini", to=to) >= 1
    assert ha.metric("modelmux_retries_total", model="ha", kind="failover") >= 3


def test_retry_after_is_honoured(ha, mock):
    settle(ha, mock)
    mock.set_fault("openai", "status=429 retry_after=1", times=1)
    start = time.monotonic()
    r = ha.client().chat.completions.create(model="solo", messages=USER)
    elapsed = time.monotonic() - start
    assert r.choices[0].message.content.startswith("Mock openai")
    assert elapsed >= 1.0, f"retried after {elapsed:.2f}s, before the vendor's Retry-After"


def test_retry_after_beyond_the_deadline_returns_the_429(ha, mock):
    settle(ha, mock)
    mock.set_fault("openai", "status=429 retry_after=30", times=1)
    start = time.monotonic()
    with pytest.raises(openai.RateLimitError) as e:
        ha.client().chat.completions.create(model="solo", messages=USER)
    assert time.monotonic() - start < 2
    assert e.value.response.headers["retry-after"] == "30"


def test_all_attempts_failing_reports_the_last_error(ha, mock):
    settle(ha, mock)
    mock.set_fault("openai", "status=500", times=3)
    with pytest.raises(openai.InternalServerError) as e:
        ha.client().chat.completions.create(model="solo", messages=USER)
    assert e.value.status_code == 502
    settle(ha, mock)


def test_client_disconnect_mid_stream_closes_the_upstream(ha, mock):
    settle(ha, mock)
    before = mock.stats("openai")["client_disconnects"]
    body = {"model": "solo", "stream": True,
            "messages": [{"role": "user", "content": "go [[mock words=40 chunk_delay_ms=100]]"}]}
    with httpx.stream("POST", ha.base_url + "/v1/chat/completions", json=body,
                      headers={"authorization": f"Bearer {DEMO_KEY}"}, timeout=10) as r:
        seen = 0
        for chunk in r.iter_raw():
            seen += chunk.count(b"data:")
            if seen >= 3:
                break
    deadline = time.time() + 5
    while time.time() < deadline and mock.stats("openai")["client_disconnects"] == before:
        time.sleep(0.1)
    assert mock.stats("openai")["client_disconnects"] == before + 1, "the mock saw the upstream connection close"


def test_client_disconnect_before_the_first_byte_cancels_the_upstream(ha, mock):
    settle(ha, mock)
    before = mock.stats("openai")["client_disconnects"]
    start = time.monotonic()
    with pytest.raises(httpx.TimeoutException):
        httpx.post(ha.base_url + "/v1/chat/completions", headers={"authorization": f"Bearer {DEMO_KEY}"},
                   json={"model": "solo", "messages": [{"role": "user", "content": "think [[mock latency_ms=4000]]"}]},
                   timeout=0.5)
    while time.monotonic() - start < 3 and mock.stats("openai")["client_disconnects"] == before:
        time.sleep(0.05)
    assert mock.stats("openai")["client_disconnects"] == before + 1
    assert time.monotonic() - start < 3, "the vendor saw the cancel long before its 4 s answer"


def test_a_vendor_restart_does_not_fail_the_next_request():
    """The pooled connection to a restarted vendor is dead; the gateway reconnects on its own,
    with retries off so that only the stale-connection handling can save the request."""
    from conftest import Mock, Process, free_port_block, wait_http

    base = free_port_block(5)
    vendor = Process(["mock", "--base-port", str(base)], "mock-restart")
    own = Mock(base)
    wait_http(own.url("openai") + "/__mock/stats")

    def make(port, metrics):
        return f"""
server: {{listen: ["127.0.0.1:{port}"]}}
metrics: {{listen: "127.0.0.1:{metrics}"}}
providers: [{{name: v, kind: openai, base_url: "{own.url("openai")}/v1", api_key: sk-mock-openai}}]
models: {{m: {{targets: [{{provider: v, model: gpt-4o-mini}}], retry: {{attempts: 1}}}}}}
keys: [{{name: all, key: {DEMO_KEY}}}]
"""
    try:
        with running_gateway(make) as gw:
            client = gw.client()
            for _ in range(3):
                client.chat.completions.create(model="m", messages=USER)
            vendor.stop()
            vendor = Process(["mock", "--base-port", str(base)], "mock-restart")
            wait_http(own.url("openai") + "/__mock/stats")
            for _ in range(3):
                r = client.chat.completions.create(model="m", messages=USER)
                assert r.choices[0].message.content.startswith("Mock openai")
    finally:
        vendor.stop()
