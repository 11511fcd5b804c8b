"""Client keys as a product: a config key given by its SHA-256 (`key_sha256`, from
`modelmux key new` / `modelmux key hash`), so the file holds no secret; keys made, changed,
rotated and revoked at runtime through `/admin/keys`, kept in the log store's database (the
SQLite file, or PostgreSQL shared by replicas), with every admin action in `/admin/audit`."""

import json
import subprocess
import time
from pathlib import Path

import httpx
import openai
import pytest

from conftest import BIN, free_port, mock_providers, running_gateway


def new_key():
    out = subprocess.run([str(BIN), "key", "new"], capture_output=True, text=True, check=True).stdout
    fields = dict(line.split(":", 1) for line in out.strip().splitlines())
    return fields["key"].strip(), fields["key_sha256"].strip()


def test_a_key_given_by_its_hash_opens_the_gateway_and_the_file_holds_no_secret(mock, tmp_path):
    key, digest = new_key()
    assert key.startswith("sk-mm-") and len(key) == 46 and len(digest) == 64
    hashed = subprocess.run([str(BIN), "key", "hash"], input=key + "\n", capture_output=True, text=True, check=True)
    assert hashed.stdout.strip() == digest, "`key hash` of the key is the hash `key new` printed"

    def config(port, metrics):
        return f"""
server: {{listen: ["127.0.0.1:{port}"], threads: 1}}
metrics: {{listen: "127.0.0.1:{metrics}"}}
logs: {{backend: off}}
providers:
{mock_providers(mock, "openai")}
models:
  gpt-4o-mini:
    targets: [{{provider: openai, model: gpt-4o-mini}}]
keys:
  - {{name: hashed, key_sha256: {digest}}}
"""
    with running_gateway(config) as g:
        assert key not in open(g.conf).read()
        client = g.client(key=key)  # one pooled client: the same connection, request after request
        for _ in range(3):
            r = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
            assert r.choices[0].message.content == "Mock openai reply to: hi"
        with pytest.raises(openai.AuthenticationError):
            g.client(key=key[:-1] + ("A" if key[-1] != "A" else "B")).models.list()


def test_a_bad_hash_or_both_forms_are_config_problems(tmp_path):
    conf = tmp_path / "m.yaml"
    conf.write_text("""
providers: [{name: p, kind: openai, base_url: "http://127.0.0.1:1/v1", api_key: x}]
models: {m: {targets: [{provider: p, model: m}]}}
keys:
  - {name: short, key_sha256: abc}
  - {name: both, key: sk-12345678, key_sha256: 0000000000000000000000000000000000000000000000000000000000000000}
""")
    checked = subprocess.run([str(BIN), "check", "-c", str(conf)], capture_output=True, text=True)
    assert checked.returncode == 1
    assert "keys[0].key_sha256: 64 hex digits" in checked.stderr
    assert "keys[1].key: give the key (`key`) or its SHA-256" in checked.stderr


# --- runtime keys -----------------------------------------------------------------------------

ADMIN_KEY = "sk-test-keys-admin-0123456789"


def config_with_admin(mock, admin_port, logs=""):
    def make(port, metrics):
        return f"""
server: {{listen: ["127.0.0.1:{port}"], threads: 2}}
metrics: {{listen: "127.0.0.1:{metrics}"}}
admin: {{listen: "127.0.0.1:{admin_port}", key: {ADMIN_KEY}}}
{logs}
providers:
{mock_providers(mock, "openai")}
models:
  gpt-4o-mini:
    targets: [{{provider: openai, model: gpt-4o-mini}}]
keys:
  - {{name: demo, key: sk-test-keys-demo-key}}
"""
    return make


def admin(port, method, path, **kw):
    return httpx.request(method, f"http://127.0.0.1:{port}{path}", timeout=10,
                         headers={"authorization": f"Bearer {ADMIN_KEY}"}, **kw)


def chat(client):
    return client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])


def eventually(check, within=5.0):
    """`check()` is true within `within` seconds (keys reach other replicas in about one)."""
    deadline = time.time() + within
    while True:
        try:
            if check():
                return
        except Exception:
            pass
        if time.time() > deadline:
            pytest.fail(f"not within {within} s")
        time.sleep(0.1)


def refused(client):
    try:
        chat(client)
        return False
    except openai.AuthenticationError:
        return True


@pytest.fixture()
def keyed(mock):
    admin_port = free_port()
    with running_gateway(config_with_admin(mock, admin_port)) as g:
        g.admin_port = admin_port
        yield g


def test_a_key_made_at_runtime_works_at_once_and_revoking_it_holds_on_open_connections(keyed):
    windows = [{"tokens": 100000, "period": "day"}, {"cost": 5, "period": "month"}]
    made = admin(keyed.admin_port, "POST", "/admin/keys",
                 json={"name": "ci-bot", "models": ["gpt-4o*"], "limits": {"rpm": 100}, "labels": {"team": "infra"},
                       "budgets": windows})
    assert made.json()["budgets"] == [dict(w, cost=None) if "tokens" in w else dict(w, tokens=None) for w in windows]
    same_period = [{"tokens": 1, "period": "day"}, {"cost": 1, "period": "day"}]
    assert admin(keyed.admin_port, "POST", "/admin/keys", json={"name": "y", "budgets": same_period}).status_code == 400
    assert made.status_code == 201, made.text
    secret = made.json()["key"]
    assert secret.startswith(made.json()["prefix"]) and made.json()["labels"] == {"team": "infra"}
    client = keyed.client(key=secret)  # pooled: the revocation must hold on its open connection
    assert chat(client).choices[0].message.content == "Mock openai reply to: hi"
    listed = {k["name"]: k for k in admin(keyed.admin_port, "GET", "/admin/keys").json()["data"]}
    assert listed["demo"]["source"] == "config" and listed["demo"]["read_only"]
    assert listed["ci-bot"]["source"] == "runtime" and "key" not in listed["ci-bot"]
    spend = [b for b in admin(keyed.admin_port, "GET", "/admin/budgets").json()["data"] if b["key"] == "ci-bot"]
    assert [b["period"] for b in spend] == ["day", "month"] and spend[0]["tokens"]["spent"] > 0, \
        "both windows count the request"
    assert secret not in json.dumps(listed), "the secret is shown once, when made"
    # The config's keys are the file's to change, and their names are taken.
    assert admin(keyed.admin_port, "PATCH", "/admin/keys/demo", json={"limits": {"rpm": 1}}).status_code == 409
    assert admin(keyed.admin_port, "POST", "/admin/keys", json={"name": "demo"}).status_code == 409
    assert admin(keyed.admin_port, "POST", "/admin/keys", json={"name": "x", "models": ["nope"]}).status_code == 400
    # Only the models it was given (a pattern: gpt-4o-mini matched gpt-4o*).
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="other", messages=[{"role": "user", "content": "x"}])
    assert admin(keyed.admin_port, "DELETE", "/admin/keys/ci-bot").json()["revoked_at"]
    assert refused(client)
    assert admin(keyed.admin_port, "POST", "/admin/keys", json={"name": "ci-bot"}).status_code == 409, \
        "a revoked key's name is not reused"
    # Nothing that was a secret is in the database, or the audit trail.
    db = Path(keyed.conf).with_suffix(".logs.db")
    assert secret.encode() not in db.read_bytes() + Path(str(db) + "-wal").read_bytes()
    trail = admin(keyed.admin_port, "GET", "/admin/audit").json()["data"]
    assert [e["action"] for e in trail][:2] == ["key.revoke", "key.create"]
    assert trail[1]["actor"] == "admin key" and trail[1]["ip"] == "127.0.0.1" and trail[1]["target"] == "ci-bot"
    assert secret not in json.dumps(trail)


def test_runtime_keys_outlive_a_reload_of_the_file_and_its_keys_change(keyed):
    made = admin(keyed.admin_port, "POST", "/admin/keys", json={"name": "survivor", "models": ["gpt-4o-mini"]})
    assert made.status_code == 201, made.text
    client = keyed.client(key=made.json()["key"])  # pooled, opened before the reload
    demo = keyed.client(key="sk-test-keys-demo-key")
    assert chat(client) and chat(demo)
    conf = Path(keyed.conf)
    text = conf.read_text()
    conf.write_text(text.replace("sk-test-keys-demo-key", "sk-test-keys-demo-key-2"))
    try:
        r = admin(keyed.admin_port, "POST", "/admin/reload")
        assert r.status_code == 200, r.text
        # The file's key changed with the file; the runtime key is still there, on the same
        # connection, and still listed as runtime.
        assert refused(demo)
        assert chat(keyed.client(key="sk-test-keys-demo-key-2"))
        assert chat(client).choices[0].message.content == "Mock openai reply to: hi"
        listed = {k["name"]: k for k in admin(keyed.admin_port, "GET", "/admin/keys").json()["data"]}
        assert listed["survivor"]["source"] == "runtime" and listed["demo"]["source"] == "config"
        # A file key given a runtime key's name takes its place (the file is the operator's
        # word), and the reload says so.
        conf.write_text(text.replace("name: demo", "name: survivor"))
        r = admin(keyed.admin_port, "POST", "/admin/reload")
        assert r.status_code == 200 and any("`survivor`" in w for w in r.json()["warnings"]), r.text
        assert refused(client)
    finally:
        conf.write_text(text)


def test_a_rotated_key_keeps_its_old_secret_for_the_grace_period(keyed):
    old = admin(keyed.admin_port, "POST", "/admin/keys", json={"name": "rotating"}).json()["key"]
    old_client = keyed.client(key=old)
    chat(old_client)
    rotated = admin(keyed.admin_port, "POST", "/admin/keys/rotating/rotate", json={"grace_seconds": 2})
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["key"]
    assert new != old and not refused(keyed.client(key=new))
    assert not refused(old_client), "the old secret works during the grace period"
    eventually(lambda: refused(old_client), within=5)
    assert not refused(keyed.client(key=new))
    updated = admin(keyed.admin_port, "PATCH", "/admin/keys/rotating", json={"expires_at": int(time.time()) - 1})
    assert updated.status_code == 200
    assert refused(keyed.client(key=new)), "an expiry in the past ends it"
    actions = [e["action"] for e in admin(keyed.admin_port, "GET", "/admin/audit").json()["data"]]
    assert actions[:3] == ["key.update", "key.rotate", "key.create"]


def test_replicas_on_one_postgres_share_keys_within_seconds_and_keep_them_when_it_is_down(mock):
    from test_logs import start_postgres, stop_postgres
    port = free_port()
    pg, data = start_postgres(port)
    logs = f'logs: {{backend: postgres, url: "postgres://postgres@127.0.0.1:{port}/postgres"}}'
    a_admin, b_admin = free_port(), free_port()
    try:
        with running_gateway(config_with_admin(mock, a_admin, logs)) as a, \
                running_gateway(config_with_admin(mock, b_admin, logs)) as b:
            secret = admin(a_admin, "POST", "/admin/keys", json={"name": "shared"}).json()["key"]
            on_b = b.client(key=secret)
            eventually(lambda: not refused(on_b), within=5)
            on_a = a.client(key=secret)
            chat(on_a)
            assert admin(b_admin, "DELETE", "/admin/keys/shared").status_code == 200
            eventually(lambda: refused(on_a), within=5)
            kept = admin(a_admin, "POST", "/admin/keys", json={"name": "kept"}).json()["key"]
            eventually(lambda: not refused(b.client(key=kept)), within=5)
            stop_postgres(pg, data)
            # The database down: the keys in force keep working, a write fails and says why.
            assert not refused(a.client(key=kept)) and not refused(b.client(key=kept))
            failed = admin(a_admin, "POST", "/admin/keys", json={"name": "later"})
            assert failed.status_code == 503 and "could not be stored" in failed.json()["error"]["message"]
            time.sleep(1.5)  # a failed look for changes drops nothing
            assert not refused(b.client(key=kept))
    finally:
        if pg.poll() is None:
            stop_postgres(pg, data)


def test_a_team_budget_stops_all_its_keys_config_and_runtime_alike(mock):
    admin_port = free_port()
    make = config_with_admin(mock, admin_port)

    def with_team(port, metrics):
        return make(port, metrics).replace(
            "keys:\n  - {name: demo, key: sk-test-keys-demo-key}",
            "teams:\n  web: {limits: {rpm: 1000}, budget: {tokens: 40, period: day}}\n"
            "keys:\n  - {name: demo, key: sk-test-keys-demo-key, team: web}")
    with running_gateway(with_team) as g:
        made = admin(admin_port, "POST", "/admin/keys", json={"name": "web-bot", "team": "web"})
        assert made.status_code == 201 and made.json()["team"] == "web"
        assert admin(admin_port, "POST", "/admin/keys", json={"name": "x", "team": "nope"}).status_code == 400
        clients = [g.client(key="sk-test-keys-demo-key"), g.client(key=made.json()["key"])]
        refusal = None
        for i in range(40):
            try:
                chat(clients[i % 2])
            except openai.RateLimitError as e:
                refusal = e
                break
        assert refusal is not None and "team's budget" in str(refusal), refusal
        for c in clients:
            with pytest.raises(openai.RateLimitError):
                chat(c)
        budgets = admin(admin_port, "GET", "/admin/budgets").json()["data"]
        team = next(b for b in budgets if b["team"] == "web" and b["key"] is None)
        assert team["tokens"]["spent"] >= 40 and team["tokens"]["limit"] == 40
