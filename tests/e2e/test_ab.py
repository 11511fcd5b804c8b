"""Sticky A/B splits: a session (x-session-id, or the request's `user`) keeps one target, the
split across sessions follows the weights, and the reply names the target that answered."""

import collections
import concurrent.futures

import httpx
import pytest

from conftest import DEMO_KEY, gateway_of, running_gateway


def config(mock):
    def make(port, metrics):
        return f"""
server: {{listen: ["127.0.0.1:{port}"], threads: 2}}
metrics: {{listen: "127.0.0.1:{metrics}"}}
providers:
  - {{name: a, kind: openai, base_url: "{mock.url("openai")}/v1", api_key: sk-mock-openai}}
  - {{name: b, kind: openai_compatible, base_url: "{mock.url("dashscope")}/compatible-mode/v1", api_key: sk-mock-dashscope}}
models:
  split:
    targets:
      - {{provider: a, model: gpt-4o-mini, weight: 3}}
      - {{provider: b, model: qwen-plus, weight: 1}}
keys: [{{name: all, key: {DEMO_KEY}}}]
"""
    return make


gw = gateway_of(config)


def test_sessions_keep_their_target_and_split_by_weight(gw):
    def one(i):
        session = f"session-{i % 100}"
        if i % 2:
            h, extra = {"x-session-id": session}, {}
        else:
            h, extra = {}, {"user": session}
        h["authorization"] = f"Bearer {DEMO_KEY}"
        r = httpx.post(gw.base_url + "/v1/chat/completions", headers=h, timeout=10,
                       json={"model": "split", "messages": [{"role": "user", "content": "hi"}], **extra})
        assert r.status_code == 200
        return session, r.headers["x-modelmux-target"]

    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        seen = list(pool.map(one, range(1000)))
    targets = collections.defaultdict(set)
    for session, target in seen:
        targets[session].add(target)
    assert len(targets) == 100
    assert all(len(t) == 1 for t in targets.values()), "every session keeps one target"
    on_a = sum(1 for t in targets.values() if t == {"a/gpt-4o-mini"})
    assert abs(on_a - 75) <= 5, f"{on_a} of 100 sessions on the weight-3 target"


def test_without_a_session_the_reply_still_names_its_target(gw):
    r = httpx.post(gw.base_url + "/v1/chat/completions", headers={"authorization": f"Bearer {DEMO_KEY}"},
                   json={"model": "split", "messages": [{"role": "user", "content": "hi"}]}, timeout=10)
    assert r.headers["x-modelmux-target"] in ("a/gpt-4o-mini", "b/qwen-plus")


def jwt_config(mock, secret, ttl):
    def make(port, metrics):
        return f"""
server: {{listen: ["127.0.0.1:{port}"]}}
metrics: {{listen: "127.0.0.1:{metrics}"}}
providers:
  - name: zhipu
    kind: openai_compatible
    base_url: {mock.url("openai")}/api/paas/v4
    auth: {{type: jwt, key_id: mock-zhipu-id, secret: {secret}, ttl: {ttl}}}
models:
  glm: {{targets: [{{provider: zhipu, model: glm-4-flash}}], retry: {{attempts: 1}}}}
keys: [{{name: all, key: {DEMO_KEY}}}]
"""
    return make


def test_jwt_signed_vendor_credentials(mock):
    """The gateway signs HS256 tokens from a key id and secret, and signs anew before they
    expire; the mock checks signature and expiry; a wrong secret is the vendor refusing us."""
    import time
    import openai
    with running_gateway(jwt_config(mock, "mock-zhipu-secret", "1s")) as g:
        client = g.client()
        for _ in range(3):
            r = client.chat.completions.create(model="glm", messages=[{"role": "user", "content": "hi"}])
            assert r.choices[0].message.content.startswith("Mock openai")
            time.sleep(0.7)  # past the first token's lifetime: a new one is signed
        token = mock.last("openai")["headers"]["authorization"]
        assert token.startswith("Bearer ") and token.count(".") == 2
    with running_gateway(jwt_config(mock, "not-the-secret", "1m")) as g:
        with pytest.raises(openai.APIStatusError) as e:
            g.client().chat.completions.create(model="glm", messages=[{"role": "user", "content": "hi"}])
        assert e.value.status_code == 502 and e.value.body["code"] == "upstream_auth"
        assert "not-the-secret" not in g.process.output()
