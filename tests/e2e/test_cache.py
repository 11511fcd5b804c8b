"""The response cache: exact-match answers in memory or Redis, per key unless global, streamed
or not in either client API, never errors or cut streams, one vendor call for a burst of the
same prompt, a byte cap that holds; and three replicas sharing limits, budgets and the cache
through one redis-server."""

import concurrent.futures
import time

import anthropic
import httpx
import pytest

from conftest import DEMO_KEY, free_port, running_gateway, sse_events
from test_fail_open import start_redis

OTHER = "sk-test-other-tenant"
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


def config(mock, cache="", limits="", keys=""):
    def make(port, metrics):
        return f"""
server: {{listen: ["127.0.0.1:{port}"], threads: 2}}
metrics: {{listen: "127.0.0.1:{metrics}"}}
{cache}
{limits}
providers:
  - {{name: openai, kind: openai, base_url: "{mock.url("openai")}/v1", api_key: sk-mock-openai}}
  - {{name: anthropic, kind: anthropic, base_url: "{mock.url("anthropic")}", api_key: sk-ant-mock}}
models:
  cached:
    targets: [{{provider: openai, model: gpt-4o-mini}}]
    cache: {{ttl: 1h}}
    retry: {{attempts: 1}}
  shared:
    targets: [{{provider: openai, model: gpt-4o-mini}}]
    cache: {{ttl: 1h, scope: global}}
  claude-cached:
    targets: [{{provider: anthropic, model: claude-x}}]
    cache: {{ttl: 1h}}
    retry: {{attempts: 1}}
  plain:
    targets: [{{provider: openai, model: gpt-4o-mini}}]
keys:
  - {{name: all, key: {DEMO_KEY}}}
  - {{name: other, key: {OTHER}}}
{keys}
"""
    return make


@pytest.fixture(scope="module")
def gw(mock):
    with running_gateway(config(mock, "cache: {backend: memory, max_bytes: 200000}")) as g:
        yield g


counter = iter(range(10**9))


def unique(text="hello"):
    return f"{text} {next(counter)} {time.time_ns()}"


def chat(gw, content, model="cached", key=DEMO_KEY, stream=False, headers=None, **extra):
    h = {"authorization": f"Bearer {key}"}
    h.update(headers or {})
    return httpx.post(gw.base_url + "/v1/chat/completions", headers=h, timeout=20,
                      json={"model": model, "stream": stream, "messages": [{"role": "user", "content": content}], **extra})


def vendor_calls(mock, vendor="openai"):
    return mock.stats(vendor)["requests"]


def text_of(r):
    if r.headers["content-type"].startswith("text/event-stream"):
        return "".join(e["choices"][0]["delta"].get("content") or "" for e in sse_events(r.text)
                       if e != "[DONE]" and e.get("choices"))
    return r.json()["choices"][0]["message"]["content"]


def test_the_second_identical_request_is_a_hit_streamed_or_not(gw, mock):
    prompt = unique()
    before = vendor_calls(mock)
    first = chat(gw, prompt)
    assert first.headers["x-modelmux-cache"] == "miss"
    for stream in (False, True, True, False):
        r = chat(gw, prompt, stream=stream)
        assert r.status_code == 200 and r.headers["x-modelmux-cache"] == "hit"
        assert text_of(r) == text_of(first)
    assert vendor_calls(mock) == before + 1
    # A stream can fill the cache for a later non-streamed request too.
    prompt = unique()
    streamed = chat(gw, prompt, stream=True, stream_options={"include_usage": True})
    usage = [e for e in sse_events(streamed.text) if e != "[DONE]" and e.get("usage")][0]["usage"]
    again = chat(gw, prompt)
    assert again.headers["x-modelmux-cache"] == "hit" and again.json()["usage"] == usage
    assert text_of(again) == text_of(streamed)


def test_hits_in_the_anthropic_api_too(gw, mock):
    client = anthropic.Anthropic(base_url=gw.base_url, api_key=DEMO_KEY, max_retries=0)
    prompt = unique()
    before = vendor_calls(mock, "anthropic")
    first = client.messages.create(model="claude-cached", max_tokens=64, messages=[{"role": "user", "content": prompt}])
    with client.messages.stream(model="claude-cached", max_tokens=64, messages=[{"role": "user", "content": prompt}]) as s:
        streamed = s.get_final_message()
    assert streamed.content[0].text == first.content[0].text
    assert streamed.stop_reason == first.stop_reason and streamed.usage.output_tokens == first.usage.output_tokens
    assert vendor_calls(mock, "anthropic") == before + 1


def test_tool_calls_survive_the_cache(gw):
    prompt = unique("weather in Oslo?")
    first = chat(gw, prompt, tools=TOOLS, stream=True)
    second = chat(gw, prompt, tools=TOOLS)
    assert second.headers["x-modelmux-cache"] == "hit"
    call = second.json()["choices"][0]["message"]["tool_calls"][0]
    streamed_args = "".join(tc["function"].get("arguments") or "" for e in sse_events(first.text)
                            if e != "[DONE]" and e.get("choices")
                            for tc in e["choices"][0]["delta"].get("tool_calls") or [])
    assert call["function"]["name"] == "get_weather" and call["function"]["arguments"] == streamed_args
    assert second.json()["choices"][0]["finish_reason"] == "tool_calls"


def test_keys_do_not_share_entries_unless_the_model_says_global(gw, mock):
    prompt = unique()
    chat(gw, prompt)
    assert chat(gw, prompt, key=OTHER).headers["x-modelmux-cache"] == "miss"
    chat(gw, prompt, model="shared")
    assert chat(gw, prompt, model="shared", key=OTHER).headers["x-modelmux-cache"] == "hit"


def test_no_cache_skips_the_read_and_no_store_the_write(gw, mock):
    prompt = unique()
    chat(gw, prompt)
    before = vendor_calls(mock)
    r = chat(gw, prompt, headers={"cache-control": "no-cache"})
    assert r.headers["x-modelmux-cache"] == "miss" and vendor_calls(mock) == before + 1
    other = unique()
    chat(gw, other, headers={"cache-control": "no-store"})
    assert chat(gw, other).headers["x-modelmux-cache"] == "miss", "nothing was stored"
    r = chat(gw, unique(), headers={"cache-control": "no-cache, no-store"})
    assert r.headers["x-modelmux-cache"] == "bypass"
    assert "x-modelmux-cache" not in chat(gw, unique(), model="plain").headers


def test_errors_and_cut_streams_are_never_cached(gw, mock):
    prompt = unique()
    mock.set_fault("openai", "status=500", times=1)
    assert chat(gw, prompt).status_code == 502
    assert chat(gw, prompt).headers["x-modelmux-cache"] == "miss", "the error was not stored"
    prompt = unique()
    mock.set_fault("openai", "reset_after=2", times=1)
    cut = chat(gw, prompt, stream=True)
    assert "error" in cut.text
    before = vendor_calls(mock)
    assert chat(gw, prompt, stream=True).headers["x-modelmux-cache"] == "miss"
    assert vendor_calls(mock) == before + 1


def test_a_burst_of_the_same_prompt_makes_one_vendor_call(gw, mock):
    prompt = unique("slow [[mock latency_ms=300]]")
    before = vendor_calls(mock)
    with concurrent.futures.ThreadPoolExecutor(max_workers=10) as pool:
        replies = list(pool.map(lambda _: chat(gw, prompt), range(10)))
    assert [r.status_code for r in replies] == [200] * 10
    assert len({text_of(r) for r in replies}) == 1
    assert vendor_calls(mock) == before + 1
    assert sorted(r.headers["x-modelmux-cache"] for r in replies) == ["hit"] * 9 + ["miss"]


def test_the_memory_cap_holds_under_a_flood(gw):
    for _ in range(120):
        assert chat(gw, unique("flood [[mock words=1000]]")).status_code == 200
    metrics = gw.metrics()
    written = gw.metric("modelmux_cache_bytes_total", event="written")
    evicted = gw.metric("modelmux_cache_bytes_total", event="evicted") or 0
    assert gw.metric("modelmux_cache_total", event="eviction") > 0, metrics[-2000:]
    assert written - evicted <= 200000 * 1.1, (written, evicted)


def test_a_cache_in_an_unreachable_redis_is_a_miss(mock):
    cache = f'cache: {{backend: redis, redis_url: "redis://127.0.0.1:{free_port()}/0"}}'
    with running_gateway(config(mock, cache)) as g:
        prompt = unique()
        for _ in range(3):
            r = chat(g, prompt)
            assert r.status_code == 200 and r.headers["x-modelmux-cache"] == "miss"


def test_with_the_cache_down_identical_requests_do_not_wait_for_each_other(mock):
    """A burst of one slow prompt while Redis is unreachable: each request calls the vendor at
    once instead of waiting for the first one's answer, which never reaches the cache."""
    cache = f'cache: {{backend: redis, redis_url: "redis://127.0.0.1:{free_port()}/0"}}'
    with running_gateway(config(mock, cache)) as g:
        chat(g, unique())  # the store is found down
        prompt = unique("slow [[mock latency_ms=2000]]")
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            replies = list(pool.map(lambda _: chat(g, prompt), range(4)))
        took = time.monotonic() - started
        assert [r.status_code for r in replies] == [200] * 4
        # Each waited for the vendor once (2 s), not first for the one before it (4 s).
        assert took < 3.2, took


def test_three_replicas_share_limits_budgets_and_the_cache(mock):
    port = free_port()
    redis = start_redis(port)
    url = f"redis://127.0.0.1:{port}/0"
    prefix = f"replicas{time.time_ns()}"
    limits = f'limits: {{backend: redis, redis_url: "{url}", prefix: {prefix}}}'
    cache = f"cache: {{backend: redis, prefix: {prefix}-cache}}"
    keys = ("  - {name: hundred, key: sk-test-hundred-rpm, limits: {rpm: 100}}\n"
            "  - {name: budget, key: sk-test-budget-150, budget: {tokens: 150, period: day}}\n")
    make = config(mock, cache, limits, keys)
    try:
        with running_gateway(make) as a, running_gateway(make) as b, running_gateway(make) as c:
            gws = [a, b, c]
            prompt = unique()
            assert chat(a, prompt).headers["x-modelmux-cache"] == "miss"
            assert chat(b, prompt).headers["x-modelmux-cache"] == "hit"
            assert chat(c, prompt, stream=True).headers["x-modelmux-cache"] == "hit"

            start = time.monotonic()
            with concurrent.futures.ThreadPoolExecutor(max_workers=12) as pool:
                statuses = list(pool.map(lambda i: chat(gws[i % 3], unique(), model="plain",
                                                        key="sk-test-hundred-rpm").status_code, range(240)))
            elapsed = time.monotonic() - start
            ok = statuses.count(200)
            expected = 100 + elapsed * 100 / 60
            assert statuses.count(429) + ok == 240
            assert abs(ok - expected) <= 0.05 * expected, (ok, expected)

            spent = []
            for i in range(12):
                r = chat(gws[i % 3], unique("x [[mock words=25]]"), model="plain", key="sk-test-budget-150")
                spent.append(r.status_code)
                if r.status_code == 429:
                    assert r.json()["error"]["code"] == "insufficient_quota"
                    break
            assert spent[-1] == 429 and 3 <= len(spent) <= 7, spent
    finally:
        redis.kill()
        redis.wait(timeout=10)
