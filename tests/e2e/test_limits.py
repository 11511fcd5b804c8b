"""Rate limits (requests and tokens per minute, per key and per model), budgets, and limits
shared by two gateway processes through a real redis-server."""

import concurrent.futures
import shutil
import subprocess
import time

import httpx
import openai
import pytest

from conftest import free_port, gateway_of, running_gateway

LIMITS_KEY = "sk-test-rpm-five"
TOKENS_KEY = "sk-test-tpm-200"
BUDGET_KEY = "sk-test-budget"
OPEN_KEY = "sk-test-open-key"


def config(mock, backend=""):
    def make(port, metrics):
        return f"""
server: {{listen: ["127.0.0.1:{port}"], threads: 2}}
metrics: {{listen: "127.0.0.1:{metrics}"}}
{backend}
providers:
  - {{name: openai, kind: openai, base_url: "{mock.url("openai")}/v1", api_key: sk-mock-openai}}
  - {{name: anthropic, kind: anthropic, base_url: "{mock.url("anthropic")}", api_key: sk-ant-mock}}
models:
  gpt-4o-mini:
    targets: [{{provider: openai, model: gpt-4o-mini}}]
    price: {{prompt: 1000, completion: 2000}}
  claude:
    targets: [{{provider: anthropic, model: claude-x}}]
  capped:
    targets: [{{provider: openai, model: gpt-4o-mini}}]
    limits: {{rpm: 3}}
keys:
  - {{name: five, key: {LIMITS_KEY}, limits: {{rpm: 5}}}}
  - {{name: tokens, key: {TOKENS_KEY}, limits: {{tpm: 200}}}}
  - {{name: budget, key: {BUDGET_KEY}, budget: {{tokens: 60, period: day}}}}
  - {{name: open, key: {OPEN_KEY}}}
  - {{name: shared, key: sk-test-shared-100, limits: {{rpm: 100}}}}
"""
    return make


gw = gateway_of(config)


def post(gw, key, content="hi", model="gpt-4o-mini", stream=False):
    return httpx.post(gw.base_url + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                      json={"model": model, "stream": stream, "messages": [{"role": "user", "content": content}]},
                      timeout=30)


def test_a_burst_gets_exactly_the_limit_then_429s_with_headers(gw):
    replies = [post(gw, LIMITS_KEY) for _ in range(8)]
    assert [r.status_code for r in replies] == [200] * 5 + [429] * 3
    assert [r.headers["x-ratelimit-remaining-requests"] for r in replies[:5]] == ["4", "3", "2", "1", "0"]
    assert all(r.headers["x-ratelimit-limit-requests"] == "5" for r in replies)
    limited = replies[5]
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"
    assert limited.json()["error"]["type"] == "rate_limit_error"
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.headers["x-ratelimit-remaining-requests"] == "0"
    assert limited.headers["x-ratelimit-reset-requests"].endswith("s")
    # The SDK sees the same as a RateLimitError.
    with pytest.raises(openai.RateLimitError):
        openai.OpenAI(base_url=gw.base_url + "/v1", api_key=LIMITS_KEY, max_retries=0).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    assert gw.metric("modelmux_rejections_total", reason="key_requests") >= 4


def test_a_model_limit_applies_across_keys(gw):
    statuses = [post(gw, OPEN_KEY, model="capped").status_code for _ in range(3)]
    statuses += [post(gw, TOKENS_KEY, model="capped").status_code]
    assert statuses == [200, 200, 200, 429]


def test_tokens_per_minute_count_real_usage_of_streams(gw):
    """Each streamed reply really uses ~103 tokens, far over the ~30 estimated from the body:
    with 200 tokens a minute only two get through, which only counting real usage explains."""
    statuses = []
    for _ in range(4):
        r = post(gw, TOKENS_KEY, content="go [[mock words=100]]", model="claude", stream=True)
        statuses.append(r.status_code)
        if r.status_code == 200:
            assert r.text.rstrip().endswith("data: [DONE]")
            assert '"usage"' not in r.text, "the usage chunk the client did not ask for is not sent"
    assert statuses == [200, 200, 429, 429]
    r = post(gw, TOKENS_KEY, content="x", model="claude")
    assert r.json()["error"]["message"].startswith("Rate limit reached for tokens")


def test_budget_is_refused_once_spent(gw):
    client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=BUDGET_KEY, max_retries=0)
    used = 0
    for _ in range(5):
        try:
            r = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x [[mock words=25]]"}],
                                               stream=True)
            list(r)
            used += 1
        except openai.RateLimitError as e:
            assert e.body["code"] == "insufficient_quota"
            break
    assert used == 3, "26 tokens a request: the third crosses 60, the fourth is refused"


# --- Redis ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def redis_url():
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("redis-server is missing: scripts/test installs it")
    port = free_port()
    proc = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            import socket
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(timeout=10)


def test_two_gateways_share_one_global_limit_through_redis(mock, redis_url):
    backend = f"limits: {{backend: redis, redis_url: \"{redis_url}\", prefix: test{time.time_ns()}}}"
    with running_gateway(config(mock, backend)) as a, running_gateway(config(mock, backend)) as b:
        def one(i):
            gw = a if i % 2 else b
            return post(gw, "sk-test-shared-100").status_code

        start = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
            statuses = list(pool.map(one, range(300)))
        elapsed = time.monotonic() - start
        ok = statuses.count(200)
        assert statuses.count(429) + ok == 300
        # One bucket of 100 a minute for both gateways (two separate ones would admit ~200):
        # its capacity plus what it refilled while the burst ran.
        expected = 100 + elapsed * 100 / 60
        assert abs(ok - expected) <= 0.05 * expected, (ok, expected, elapsed)


def test_redis_budget_is_shared_too(mock, redis_url):
    backend = f"limits: {{backend: redis, redis_url: \"{redis_url}\", prefix: budget{time.time_ns()}}}"
    with running_gateway(config(mock, backend)) as a, running_gateway(config(mock, backend)) as b:
        content = "x [[mock words=25]]"
        assert post(a, BUDGET_KEY, content).status_code == 200
        assert post(b, BUDGET_KEY, content).status_code == 200
        assert post(a, BUDGET_KEY, content).status_code == 200
        time.sleep(0.2)  # a reply's real usage is settled just after it is sent
        r = post(b, BUDGET_KEY, content)
        assert r.status_code == 429 and r.json()["error"]["code"] == "insufficient_quota"
