"""The request log store: every request a row in an embedded SQLite file beside the config
(`<config>.logs.db`), read back through the admin API (`/admin/logs` with filters and a cursor,
`/admin/logs/{request_id}`, `/admin/usage` totals by day, key, model or provider), off the
request path: a store that cannot be opened or is switched off fails no request."""

import csv
import io
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
    [attempt] = row["attempts"]
    assert (attempt["provider"], attempt["model"], attempt["outcome"]) == ("openai", "gpt-4o-mini", "ok")
    assert 0 < attempt["duration_ms"] <= row["duration_ms"] and row["path"] == "/v1/chat/completions"
    assert row["request_body"] is None, "bodies only where logs.bodies asks"
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
    assert by_day[-1]["p99_ms"] >= by_day[-1]["mean_ms"] > 0
    stacked = admin(logged, "/admin/usage", group="day", stack="model").json()["data"]
    today = {u["stack"]: u for u in stacked if u["group"] == by_day[-1]["group"]}
    assert sum(u["requests"] for u in today.values()) == by_day[-1]["requests"]
    assert today["gpt-4o-mini"]["cost"] == pytest.approx(sum(r["cost"] or 0 for r in rows))
    assert admin(logged, "/admin/usage", group="nonsense").status_code == 400
    # Both export as CSV: a header line and a line per item.
    exported = admin(logged, "/admin/logs", key="demo", limit=1000, format="csv")
    assert exported.headers["content-type"].startswith("text/csv")
    lines = list(csv.DictReader(io.StringIO(exported.text)))
    assert [l["request_id"] for l in lines] == [r["request_id"] for r in rows]
    usage_csv = list(csv.DictReader(io.StringIO(admin(logged, "/admin/usage", group="key", format="csv").text)))
    assert {l["group"]: int(l["requests"]) for l in usage_csv}["demo"] == len(rows)
    assert httpx.get(f"http://127.0.0.1:{logged.admin_port}/admin/logs").status_code == 401


@pytest.mark.parametrize("logs", ["logs: {backend: off}", "logs: {path: /nonexistent-dir/logs.db}"])
def test_no_store_fails_no_request(mock, logs):
    admin_port = free_port()
    with running_gateway(config(mock, admin_port, logs)) as g:
        g.admin_port = admin_port
        r = g.client().chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        assert r.choices[0].message.content == "Mock openai reply to: hi"
        assert admin(g, "/admin/logs").status_code == 404


def start_postgres(port):
    """A PostgreSQL server of Debian's package on loopback, in a fresh directory, run as the
    `postgres` user when the tests run as root (it refuses root)."""
    import glob
    import os
    import shutil
    import socket
    import subprocess
    import tempfile
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.fail("PostgreSQL is missing: scripts/test installs the Debian package postgresql")
    bindir = Path(found[-1]).parent
    data = Path(tempfile.mkdtemp(prefix="modelmux-pg-"))
    as_user = []
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(data / "db"), "-A", "trust", "-U", "postgres",
                    "--no-sync"], check=True, capture_output=True)
    proc = subprocess.Popen([*as_user, str(bindir / "postgres"), "-D", str(data / "db"), "-p", str(port),
                             "-k", str(data), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                time.sleep(0.3)  # accepting before it is ready for queries, at first
                return proc, data
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("postgres did not start")


def stop_postgres(proc, data):
    """A fast shutdown, signalled to the server itself (`runuser` does not pass it on)."""
    import os
    import signal
    pid = int((data / "db" / "postmaster.pid").read_text().split()[0])
    os.kill(pid, signal.SIGINT)
    proc.wait(timeout=20)


def test_replicas_share_one_postgres_store_with_a_partition_a_day(mock):
    import subprocess
    port = free_port()
    pg, data = start_postgres(port)
    url = f"postgres://postgres@127.0.0.1:{port}/postgres"
    logs = f'logs: {{backend: postgres, url: "{url}"}}'
    a_admin, b_admin = free_port(), free_port()
    try:
        with running_gateway(config(mock, a_admin, logs)) as a, running_gateway(config(mock, b_admin, logs)) as b:
            a.admin_port, b.admin_port = a_admin, b_admin
            made = []
            for g in (a, b, a, b):
                r = g.client().chat.completions.with_raw_response.create(
                    model="gpt-4o-mini", messages=[{"role": "user", "content": "shared"}])
                made.append((r.headers["x-request-id"], r.parse().usage.completion_tokens))
            # Each replica reads what the other wrote.
            for request_id, _ in made:
                until_logged(a, request_id)
                until_logged(b, request_id)
            usage = {u["group"]: u for u in admin(a, "/admin/usage", group="model").json()["data"]}
            assert usage["gpt-4o-mini"]["requests"] == 4
            assert usage["gpt-4o-mini"]["completion_tokens"] == sum(t for _, t in made)
            parts = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-At", "-c",
                                    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE c.relkind = 'r'"],
                                   capture_output=True, text=True, check=True).stdout.split()
            assert parts == ["requests_v2_" + time.strftime("%Y%m%d", time.gmtime())], parts
            # The store goes away: no request fails; it comes back: rows are written again.
            stop_postgres(pg, data)
            for _ in range(5):
                r = a.client().chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "still"}])
                assert r.choices[0].message.content == "Mock openai reply to: still"
            pg, _ = restart_postgres(port, data)
            # The first write after the restart may still meet the old connection; the next
            # ones are written.
            deadline = time.time() + 15
            while time.time() < deadline:
                r = a.client().chat.completions.with_raw_response.create(
                    model="gpt-4o-mini", messages=[{"role": "user", "content": "back"}])
                time.sleep(0.5)
                if admin(a, f"/admin/logs/{r.headers['x-request-id']}").status_code == 200:
                    break
            else:
                pytest.fail("rows were not written again after the store came back")
            dropped = [float(l.split()[1]) for l in a.metrics().splitlines()
                       if l.startswith("modelmux_log_rows_dropped_total ")]
            assert dropped and dropped[0] >= 1, "the rows lost during the outage were counted"
    finally:
        stop_postgres(pg, data)


def restart_postgres(port, data):
    import glob
    import os
    import subprocess
    bindir = Path(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))[-1]).parent
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    proc = subprocess.Popen([*as_user, str(bindir / "postgres"), "-D", str(data / "db"), "-p", str(port),
                             "-k", str(data), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.5)
    return proc, data


def test_bodies_are_kept_only_where_asked_redacted_and_capped(mock):
    admin_port = free_port()
    logs = "logs: {bodies: {keys: [other], max_bytes: 300}}"
    make = config(mock, admin_port, logs)
    def with_redaction(port, metrics):
        return make(port, metrics).replace(
            "    price: {prompt: 0.15, completion: 0.6}\n",
            "    price: {prompt: 0.15, completion: 0.6}\n    redact_pii: true\n", 1)
    with running_gateway(with_redaction) as g:
        g.admin_port = admin_port
        say = "mail bob.smith@example.com " + "pad " * 200
        other = g.client(key=OTHER_KEY).chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": say}])
        mine = g.client().chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": say}])
        kept = until_logged(g, other.headers["x-request-id"])
        assert "bob.smith" not in kept["request_body"] and "gpt-4o-mini" in kept["request_body"]
        assert kept["request_body"].endswith("…[truncated]") and len(kept["request_body"].encode()) <= 300 + 20
        assert "Mock openai reply" in kept["response_body"]
        assert "bob.smith" not in kept["response_body"], "the vendor saw the redacted text, and so does the log"
        assert until_logged(g, mine.headers["x-request-id"])["request_body"] is None


def test_cost_follows_the_price_tiers_and_currency_rate(mock):
    admin_port = free_port()
    make = config(mock, admin_port, "pricing: {currency: USD, rates: {CNY: 0.5}}")
    price = ("price: {currency: CNY, prompt: 1, completion: 2, "
             "tiers: [{up_to: 5, prompt: 1, completion: 2}, {prompt: 10, completion: 20}]}")
    painter = ("  painter:\n    targets: [{provider: openai, model: dall-e-2}]\n"
               "    price: {currency: CNY, per_image: {\"1024x1024\": 0.04, \"*\": 0.02}}\n")
    def priced(port, metrics):
        text = make(port, metrics).replace("price: {prompt: 0.15, completion: 0.6}", price, 1)
        return text.replace("  broken:\n", painter + "  broken:\n", 1)
    with running_gateway(priced) as g:
        g.admin_port = admin_port
        for text in ("hi", "a much longer prompt that is past the first tier of five tokens"):
            raw = g.client().chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": text}])
            u = raw.parse().usage
            row = until_logged(g, raw.headers["x-request-id"])
            rates = (1, 2) if u.prompt_tokens <= 5 else (10, 20)
            want = (u.prompt_tokens * rates[0] + u.completion_tokens * rates[1]) / 1e6 * 0.5
            assert row["cost"] == pytest.approx(want), (u, row["cost"])
        # Images by the image, at the size's price.
        made = g.client().images.with_raw_response.generate(model="painter", prompt="a cat", n=2, size="1024x1024")
        assert until_logged(g, made.headers["x-request-id"])["cost"] == pytest.approx(2 * 0.04 * 0.5)
        model = admin(g, "/admin/config").json()["models"]["gpt-4o-mini"]
        assert model["price"]["currency"] == "CNY" and model["price"]["rate"] == 0.5
