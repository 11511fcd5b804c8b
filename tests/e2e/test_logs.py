"""The request log store: every request a row in an embedded SQLite file beside the config
(`<config>.logs.db`), read back through the admin API (`/admin/logs` with filters and a cursor,
`/admin/logs/{request_id}`, `/admin/usage` totals by day, key, model or provider), off the
request path: a store that cannot be opened or is switched off fails no request."""

import time
from pathlib import Path

import anthropic
import httpx
import pytest

from conftest import DEMO_KEY, free_port, mock_providers, running_gateway

ADMIN_KEY = "sk-test-logs-admin-0123456789"
OTHER_KEY = "sk-test-logs-other-key"


def config(mock, admin_port, logs=""):
    def make(port, metrics):
        return f"""
server: {{listen: ["127.0.0.1:{port}"], threads: 2}}
metrics: {{listen: "127.0.0.1:{metrics}"}}
admin: {{listen: "127.0.0.1:{admin_port}", key: {ADMIN_KEY}}}
{logs}
providers:
{mock_providers(mock, "openai", "anthropic")}
  - {{name: nowhere, kind: openai_compatible, base_url: "http://127.0.0.1:{free_port()}/v1", timeouts: {{connect: 1s}}}}
models:
  gpt-4o-mini:
    targets: [{{provider: openai, model: gpt-4o-mini}}]
    price: {{prompt: 0.15, completion: 0.6}}
  claude:
    targets: [{{provider: anthropic, model: claude-x}}]
  broken:
    targets: [{{provider: nowhere, model: x}}]
    retry: {{attempts: 1}}
keys:
  - {{name: demo, key: {DEMO_KEY}}}
  - {{name: other, key: {OTHER_KEY}}}
"""
    return make


@pytest.fixture(scope="module")
def logged(mock):
    admin_port = free_port()
    with running_gateway(config(mock, admin_port)) as g:
        g.admin_port = admin_port
        yield g


def admin(g, path, **params):
    r = httpx.get(f"http://127.0.0.1:{g.admin_port}{path}", params=params,
                  headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=10)
    return r


def until_logged(g, request_id, timeout=5):
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = admin(g, f"/admin/logs/{request_id}")
        if r.status_code == 200:
            return r.json()
        time.sleep(0.05)
    pytest.fail(f"{request_id} was not logged")


def test_each_request_is_a_row_with_its_tokens_cost_and_attempts(logged):
    raw = logged.client().chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "log me"}])
    reply = raw.parse()
    row = until_logged(logged, raw.headers["x-request-id"])
    assert (row["key"], row["model"], row["provider"], row["api"], row["status"]) == \
        ("demo", "gpt-4o-mini", "openai", "openai", 200)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (reply.usage.prompt_tokens, reply.usage.completion_tokens)
    assert row["cost"] == pytest.approx((reply.usage.prompt_tokens * 0.15 + reply.usage.completion_tokens * 0.6) / 1e6)
    assert row["attempts"] == ["ok"] and row["path"] == "/v1/chat/completions"
    assert Path(logged.conf).with_suffix(".logs.db").exists(), "the file beside the config, named after it"


def test_failures_unpriced_models_and_other_apis_are_logged_and_filtered(logged):
    c = logged.client(key=OTHER_KEY)
    with pytest.raises(Exception):
        c.chat.completions.create(model="broken", messages=[{"role": "user", "content": "x"}])
    m = anthropic.Anthropic(base_url=logged.base_url, api_key=OTHER_KEY, max_retries=0).messages.with_raw_response.create(
        model="claude", max_tokens=50, messages=[{"role": "user", "content": "unpriced"}])
    row = until_logged(logged, m.headers["x-request-id"])
    assert row["api"] == "anthropic" and row["cost"] is None, "no price: unpriced, never $0"
    failed = admin(logged, "/admin/logs", key="other", status="5xx").json()["data"]
    assert failed and all(r["status"] >= 500 and r["key"] == "other" for r in failed)
    assert failed[0]["model"] == "broken" and failed[0]["error"] == "upstream_connect"
    only_claude = admin(logged, "/admin/logs", model="claude").json()["data"]
    assert only_claude and {r["model"] for r in only_claude} == {"claude"}


def test_pages_follow_the_cursor_and_usage_adds_up(logged):
    c = logged.client()
    raws = [c.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=[{"role": "user", "content": f"n {i}"}])
            for i in range(5)]
    used = [r.parse().usage for r in raws]
    made = [r.headers["x-request-id"] for r in raws]
    since = int(time.time() * 1000) - 60_000
    until_logged(logged, made[-1])
    ids = []
    page = admin(logged, "/admin/logs", limit=2).json()
    while page["next"] is not None:
        ids += [r["request_id"] for r in page["data"]]
        page = admin(logged, "/admin/logs", limit=2, before=page["next"]).json()
    ids += [r["request_id"] for r in page["data"]]
    assert len(ids) == len(set(ids)) and ids[:5] == made[::-1], "every row once, newest first"
    usage = {u["group"]: u for u in admin(logged, "/admin/usage", group="key", since=since).json()["data"]}
    rows = admin(logged, "/admin/logs", key="demo", limit=1000).json()["data"]
    assert usage["demo"]["requests"] == len(rows)
    assert usage["demo"]["completion_tokens"] == sum(r["completion_tokens"] or 0 for r in rows)
    assert sum(u.completion_tokens for u in used) <= usage["demo"]["completion_tokens"]
    assert usage["demo"]["cost"] == pytest.approx(sum(r["cost"] or 0 for r in rows))
    by_day = admin(logged, "/admin/usage").json()["data"]
    assert by_day[-1]["group"] == time.strftime("%Y-%m-%d", time.gmtime())
    assert admin(logged, "/admin/usage", group="nonsense").status_code == 400
    assert httpx.get(f"http://127.0.0.1:{logged.admin_port}/admin/logs").status_code == 401


@pytest.mark.parametrize("logs", ["logs: {backend: off}", "logs: {path: /nonexistent-dir/logs.db}"])
def test_no_store_fails_no_request(mock, logs):
    admin_port = free_port()
    with running_gateway(config(mock, admin_port, logs)) as g:
        g.admin_port = admin_port
        r = g.client().chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        assert r.choices[0].message.content == "Mock openai reply to: hi"
        assert admin(g, "/admin/logs").status_code == 404
