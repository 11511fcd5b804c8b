"""Sticky A/B splits: a session (x-session-id, or the request's `user`) keeps one target, the
split across sessions follows the weights, and the reply names the target that answered."""

import collections
import concurrent.futures

import httpx
import pytest

from conftest import DEMO_KEY, running_gateway


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


@pytest.fixture(scope="module")
def gw(mock):
    with running_gateway(config(mock)) as g:
        yield g


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
