"""Side-by-side compare: one chat request on several models at once, every model's answer
(or its error) in one reply or one stream; limits, budgets and access rules apply per model."""


import httpx
import pytest

from conftest import DEMO_KEY, gateway_of, mock_providers, sse_events

IP_KEY = "sk-test-loopback-only"


def config(mock):
    def make(port, metrics):
        return f"""
server: {{listen: ["127.0.0.1:{port}"]}}
metrics: {{listen: "127.0.0.1:{metrics}"}}
providers:
{mock_providers(mock, "openai", "anthropic", "gemini")}
models:
  gpt-4o-mini: {{targets: [{{provider: openai, model: gpt-4o-mini}}]}}
  claude: {{targets: [{{provider: anthropic, model: claude-x}}], retry: {{attempts: 1}}}}
  gemini: {{targets: [{{provider: gemini, model: gemini-2.5-flash}}]}}
  scarce:
    targets: [{{provider: openai, model: gpt-4o-mini}}]
    limits: {{rpm: 1}}
keys:
  - {{name: all, key: {DEMO_KEY}}}
  - {{name: local, key: {IP_KEY}, allow_ips: [127.0.0.1/32], models: [gpt-4o-mini, gemini]}}
"""
    return make


gw = gateway_of(config)


def compare(gw, body, key=DEMO_KEY, **kw):
    return httpx.post(gw.base_url + "/v1/compare", json=body,
                      headers={"authorization": f"Bearer {key}"}, timeout=30, **kw)


MESSAGES = [{"role": "user", "content": "compare us"}]


def test_every_model_answers_and_a_failing_one_does_not_fail_the_others(gw, mock):
    mock.set_fault("anthropic", "status=500")
    try:
        r = compare(gw, {"models": ["gpt-4o-mini", "claude", "gemini", "unknown"], "messages": MESSAGES,
                         "max_tokens": 50})
    finally:
        mock.clear_fault("anthropic")
    assert r.status_code == 200
    results = {x["model"]: x for x in r.json()["results"]}
    assert [x["model"] for x in r.json()["results"]] == ["gpt-4o-mini", "claude", "gemini", "unknown"]
    for model in ["gpt-4o-mini", "gemini"]:
        x = results[model]
        assert x["error"] is None and "compare us" in x["choices"][0]["message"]["content"]
        assert x["usage"]["completion_tokens"] > 0 and x["latency_ms"] >= x["ttft_ms"] >= 0
    assert results["claude"]["error"]["status"] == 502 and results["claude"]["choices"] == []
    assert results["unknown"]["error"]["status"] == 404 and results["unknown"]["ttft_ms"] is None


def test_a_streamed_compare_names_the_model_of_every_event(gw):
    r = compare(gw, {"models": ["gpt-4o-mini", "gemini"], "messages": MESSAGES, "stream": True})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    text = {"gpt-4o-mini": "", "gemini": ""}
    finals = {}
    for c in chunks:
        if c["object"] == "compare.result":
            finals[c["model"]] = c
        else:
            assert c["object"] == "chat.completion.chunk"
            text[c["model"]] += c["choices"][0]["delta"].get("content") or ""
    assert "Mock openai reply" in text["gpt-4o-mini"] and "Mock gemini reply" in text["gemini"]
    assert set(finals) == {"gpt-4o-mini", "gemini"}
    assert all(f["error"] is None and f["usage"]["total_tokens"] > 0 for f in finals.values())


def test_limits_apply_per_model(gw):
    body = {"models": ["scarce", "gpt-4o-mini"], "messages": MESSAGES}
    first = {x["model"]: x for x in compare(gw, body).json()["results"]}
    second = {x["model"]: x for x in compare(gw, body).json()["results"]}
    assert first["scarce"]["error"] is None
    assert second["scarce"]["error"]["status"] == 429
    assert second["gpt-4o-mini"]["error"] is None


def test_the_callers_key_and_address_rules_apply_to_each_model(gw):
    results = compare(gw, {"models": ["gpt-4o-mini", "claude"], "messages": MESSAGES}, key=IP_KEY).json()["results"]
    assert results[0]["error"] is None  # the key's allow_ips sees the real client, 127.0.0.1
    assert results[1]["error"]["status"] == 403  # not in the key's models


def test_bad_compare_requests_are_400s(gw):
    for body, param in [({"messages": MESSAGES}, "models"), ({"models": [], "messages": MESSAGES}, "models"),
                        ({"models": ["a", "a"], "messages": MESSAGES}, "models"),
                        ({"models": [f"m{i}" for i in range(9)], "messages": MESSAGES}, "models"),
                        ({"models": ["gpt-4o-mini"]}, "messages")]:
        r = compare(gw, body)
        assert r.status_code == 400 and r.json()["error"]["param"] == param, (body, r.text)
    r = httpx.post(gw.base_url + "/v1/compare", content=b"{not json", headers={"authorization": f"Bearer {DEMO_KEY}"})
    assert r.status_code == 400
    assert compare(gw, {"models": ["gpt-4o-mini"], "messages": MESSAGES}, key="sk-wrong-key-123").status_code == 401
