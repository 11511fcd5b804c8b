"""Operating the gateway: hot reload (admin API, SIGHUP, file watch) under load, the admin
listener, access logs with request ids, metrics checked by promtool, HTTPS listeners, client
IP allow-lists and key expiry, graceful binary upgrade, and the deployment files checked by
the tools their users run."""

import concurrent.futures
import json
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from conftest import BIN, DEMO_KEY, ROOT, Process, free_port, make_certificates, sse_events, wait_http

ADMIN_KEY = "sk-test-admin-key-0123456789"
# The upgrade socket's directory must be this user's alone (the gateway refuses a shared one).
UPGRADE_DIR = tempfile.mkdtemp(prefix="modelmux-upgrade-")
OTHER_KEY = "sk-test-other-key"
USER = [{"role": "user", "content": "Hello there"}]


def config_text(mock, port, metrics, admin, extra_model=False, with_other_key=True, server_extra="",
                keys_extra=""):
    extra = "  added:\n    targets: [{provider: openai, model: gpt-4o-mini}]\n" if extra_model else ""
    other = f"  - {{name: other, key: {OTHER_KEY}}}\n" if with_other_key else ""
    return f"""
server:
  listen: ["127.0.0.1:{port}"]
  threads: 2
  grace_period_seconds: 5
  upgrade_sock: {UPGRADE_DIR}/upgrade-{port}.sock
{server_extra}
metrics: {{listen: "127.0.0.1:{metrics}"}}
admin: {{listen: "127.0.0.1:{admin}", key: {ADMIN_KEY}}}
log: {{format: json}}
providers:
  - {{name: openai, kind: openai, base_url: "{mock.url("openai")}/v1", api_key: sk-mock-openai}}
  - {{name: anthropic, kind: anthropic, base_url: "{mock.url("anthropic")}", api_key: sk-ant-mock}}
models:
  gpt-4o-mini:
    targets: [{{provider: openai, model: gpt-4o-mini}}]
    price: {{prompt: 0.15, completion: 0.6}}
    log_bodies: true
  claude:
    targets: [{{provider: anthropic, model: claude-x}}]
{extra}keys:
  - {{name: all, key: {DEMO_KEY}}}
{other}{keys_extra}"""


class Ops:
    """A gateway started from a config file the test can rewrite."""

    def __init__(self, mock, **kw):
        self.mock = mock
        self.port, self.metrics_port, self.admin_port = free_port(), free_port(), free_port()
        self.path = Path(tempfile.mkdtemp(prefix="modelmux-ops-")) / "modelmux.yaml"
        self.kw = kw
        self.write()
        self.process = Process(["serve", "-c", str(self.path)], "ops")
        wait_http(f"http://127.0.0.1:{self.port}/health")
        self.base_url = f"http://127.0.0.1:{self.port}"

    def write(self, **changes):
        kw = dict(self.kw, **changes)
        self.path.write_text(config_text(self.mock, self.port, self.metrics_port, self.admin_port, **kw))

    def admin(self, method, path, key=ADMIN_KEY):
        return httpx.request(method, f"http://127.0.0.1:{self.admin_port}{path}",
                             headers={"authorization": f"Bearer {key}"}, timeout=10)

    def client(self, key=DEMO_KEY):
        return openai.OpenAI(base_url=self.base_url + "/v1", api_key=key, max_retries=0, timeout=30)

    def models(self, key=DEMO_KEY):
        return [m.id for m in self.client(key).models.list()]

    def stop(self):
        self.process.stop()


@pytest.fixture
def ops(mock):
    o = Ops(mock)
    yield o
    o.stop()


def test_admin_needs_its_key_and_is_not_on_the_public_listener(ops):
    assert ops.admin("GET", "/admin/status", key="wrong-key").status_code == 401
    assert ops.admin("GET", "/admin/status", key=DEMO_KEY).status_code == 401
    r = httpx.get(ops.base_url + "/admin/status", headers={"authorization": f"Bearer {ADMIN_KEY}"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_url"


def test_status_and_the_effective_config_with_secrets_masked(ops):
    ops.client().chat.completions.create(model="gpt-4o-mini", messages=USER)
    status = ops.admin("GET", "/admin/status").json()
    openai_p = next(p for p in status["providers"] if p["name"] == "openai")
    target = openai_p["targets"][0]
    assert target["breaker"] == "closed" and target["requests"] >= 1 and target["in_flight"] == 0
    assert target["latency_ms"] > 0 and target["error_rate"] == 0
    assert status["store"] == {"backend": "local", "up": True}
    r = ops.admin("GET", "/admin/config")
    body = r.text
    for secret in ("sk-mock-openai", "sk-ant-mock", DEMO_KEY, OTHER_KEY, ADMIN_KEY):
        assert secret not in body, secret
    conf = r.json()
    assert conf["keys"][0]["key"] == "***" and conf["providers"][0]["api_key"] == "***"
    assert "gpt-4o-mini" in conf["models"]


def test_reload_adds_models_removes_keys_and_rejects_bad_files(ops):
    assert "added" not in ops.models()
    ops.write(extra_model=True, with_other_key=False)
    r = ops.admin("POST", "/admin/reload")
    assert r.status_code == 200 and r.json()["status"] == "reloaded"
    assert "added" in ops.models()
    with pytest.raises(openai.AuthenticationError):
        ops.client(OTHER_KEY).models.list()

    good = ops.path.read_text()
    ops.path.write_text(good.replace("kind: anthropic", "kind: klingon"))
    r = ops.admin("POST", "/admin/reload")
    assert r.status_code == 400
    problems = r.json()["error"]["problems"]
    assert any(p["path"] == "providers[1].kind" for p in problems), problems
    assert "added" in ops.models(), "the running config is unchanged"
    assert "config reload rejected" in ops.process.output()


def test_sighup_reloads(ops):
    ops.write(extra_model=True)
    ops.process.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 5
    while "added" not in ops.models() and time.time() < deadline:
        time.sleep(0.1)
    assert "added" in ops.models()
    assert ops.process.proc.poll() is None, "SIGHUP did not stop the gateway"


def test_a_watched_file_reloads_itself(mock):
    o = Ops(mock, server_extra="  watch_config: true")
    try:
        o.write(extra_model=True)
        deadline = time.time() + 5
        while "added" not in o.models() and time.time() < deadline:
            time.sleep(0.1)
        assert "added" in o.models()
    finally:
        o.stop()


def load(base_url, stop, results, stream):
    """Requests in a loop on fresh connections (as many clients would), until `stop`."""
    with httpx.Client(base_url=base_url, timeout=20, limits=httpx.Limits(max_keepalive_connections=0)) as c:
        while not stop.is_set():
            body = {"model": "gpt-4o-mini", "stream": stream, "messages": USER}
            try:
                r = c.post("/v1/chat/completions", json=body, headers={"authorization": f"Bearer {DEMO_KEY}"})
                ok = r.status_code == 200 and (not stream or sse_events(r.text)[-1] == "[DONE]")
                results.append(ok or f"{r.status_code} {r.text[:200]}")
            except httpx.HTTPError as e:
                results.append(f"{type(e).__name__}: {e}")
            time.sleep(0.01)


def test_ten_reloads_under_load_drop_nothing(ops):
    stop, results = threading.Event(), []
    threads = [threading.Thread(target=load, args=(ops.base_url, stop, results, i % 2 == 0)) for i in range(8)]
    for t in threads:
        t.start()
    start = time.monotonic()
    try:
        for i in range(10):
            ops.write(extra_model=i % 2 == 0)
            assert ops.admin("POST", "/admin/reload").status_code == 200
            time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join()
    rate = len(results) / (time.monotonic() - start)
    failures = [r for r in results if r is not True]
    print(f"{len(results)} requests at {rate:.0f}/s through 10 reloads")
    assert rate > 150, f"only {rate:.0f} requests/s"
    assert failures == [], failures[:5]


def access_lines(ops):
    lines = []
    for line in ops.process.output().splitlines():
        if line.startswith("{") and '"request_id"' in line:
            lines.append(json.loads(line))
    return lines


def test_access_log_and_request_ids(ops, mock):
    r = httpx.post(ops.base_url + "/v1/chat/completions", timeout=10,
                   headers={"authorization": f"Bearer {DEMO_KEY}", "x-request-id": "req-test-1234"},
                   json={"model": "gpt-4o-mini", "messages": USER})
    assert r.status_code == 200 and r.headers["x-request-id"] == "req-test-1234"
    assert mock.last("openai")["headers"].get("x-request-id") == "req-test-1234", "the vendor got the id"
    stream = list(ops.client().chat.completions.create(model="claude", messages=USER, stream=True))
    assert stream
    r = httpx.post(ops.base_url + "/v1/chat/completions", timeout=10,
                   headers={"authorization": "Bearer sk-wrong-key-999"}, json={"model": "claude", "messages": USER})
    assert r.status_code == 401 and r.headers["x-request-id"].startswith("req_")
    time.sleep(0.3)
    lines = access_lines(ops)
    first = next(l for l in lines if l["request_id"] == "req-test-1234")
    assert first["key"] == "all" and first["client_ip"] == "127.0.0.1" and first["api"] == "openai"
    assert first["model"] == "gpt-4o-mini" and first["provider"] == "openai" and first["vendor_model"] == "gpt-4o-mini"
    assert first["attempts"] == ["ok"] and first["status"] == 200 and first["stream"] is False
    assert first["prompt_tokens"] > 0 and first["completion_tokens"] > 0 and first["cost"] > 0
    assert first["ttft_ms"] > 0 and first["duration_ms"] >= first["ttft_ms"] and first["bytes_out"] > 0
    assert "Hello there" in first["prompt"] and "Mock openai" in first["reply"], "log_bodies: true"
    streamed = next(l for l in lines if l["model"] == "claude" and l["status"] == 200)
    assert streamed["stream"] is True and streamed["ttft_ms"] <= streamed["duration_ms"]
    assert "prompt" not in streamed, "no bodies without log_bodies"
    refused = next(l for l in lines if l["status"] == 401)
    assert refused["key"] is None
    assert DEMO_KEY not in ops.process.output() and "sk-wrong-key-999" not in ops.process.output()


def test_metrics_pass_promtool_and_measure_time_to_first_token(ops):
    list(ops.client().chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True))
    text = httpx.get(f"http://127.0.0.1:{ops.metrics_port}/metrics").text
    assert 'modelmux_time_to_first_token_seconds_count{model="gpt-4o-mini",provider="openai"}' in text
    assert "modelmux_time_per_output_token_seconds_bucket" in text
    assert "modelmux_target_in_flight" in text and "modelmux_request_size_bytes_bucket" in text
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: scripts/test installs the Debian package prometheus")
    r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_alert_rules_pass_promtool_and_watch_metrics_the_gateway_exports():
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: scripts/test installs the Debian package prometheus")
    rules = ROOT / "deploy/prometheus"
    for args in (["check", "rules", "alerts.yaml"], ["test", "rules", "alerts_test.yaml"]):
        r = subprocess.run([promtool, *args], cwd=rules, capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
    exported = set(re.findall(r'"(modelmux_[a-z_]+)"', (ROOT / "src/metrics.rs").read_text()))
    used = {re.sub(r"_bucket$", "", m) for m in re.findall(r"modelmux_[a-z_]+", (rules / "alerts.yaml").read_text())}
    assert used <= exported, used - exported


def test_vendor_connections_are_reused_for_whole_and_streamed_replies(ops):
    def connections():
        text = httpx.get(f"http://127.0.0.1:{ops.metrics_port}/metrics").text
        found = dict(re.findall(r'modelmux_upstream_connections_total\{kind="(\w+)"\} (\d+)', text))
        return int(found.get("opened", 0)), int(found.get("reused", 0))

    client = ops.client()
    opened0, reused0 = connections()
    for _ in range(10):
        client.chat.completions.create(model="gpt-4o-mini", messages=USER)
        list(client.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True))
    opened, reused = connections()
    # One after the other, 20 requests need one connection to the vendor (a second at most,
    # should the mock close one).
    assert opened - opened0 <= 2 and reused - reused0 >= 18, (opened - opened0, reused - reused0)


def test_https_listener_with_the_openai_sdk(mock):
    d, ca, cert, key = make_certificates()
    port, metrics, admin = free_port(), free_port(), free_port()
    path = d / "modelmux.yaml"
    path.write_text(config_text(mock, port, metrics, admin,
                                server_extra=f"  tls: {{cert: {cert}, key: {key}}}"))
    p = Process(["serve", "-c", str(path)], "tls")
    try:
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                httpx.get(f"https://localhost:{port}/health", verify=ssl.create_default_context(cafile=str(ca)), timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        client = openai.OpenAI(base_url=f"https://localhost:{port}/v1", api_key=DEMO_KEY, max_retries=0,
                               http_client=httpx.Client(verify=ssl.create_default_context(cafile=str(ca))))
        r = client.chat.completions.create(model="gpt-4o-mini", messages=USER)
        assert r.choices[0].message.content.startswith("Mock openai")
        ctx = ssl.create_default_context(cafile=str(ca))
        ctx.set_alpn_protocols(["h2", "http/1.1"])
        import socket
        with socket.create_connection(("127.0.0.1", port)) as raw, ctx.wrap_socket(raw, server_hostname="localhost") as s:
            assert s.selected_alpn_protocol() == "h2"
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"https://localhost:{port}/health", timeout=2)  # not trusted without the CA

        # A rotated certificate (another CA here, to tell them apart) is served after a reload.
        _, ca2, cert2, key2 = make_certificates()
        shutil.copy(cert2, cert)
        shutil.copy(key2, key)
        r = httpx.post(f"http://127.0.0.1:{admin}/admin/reload", headers={"authorization": f"Bearer {ADMIN_KEY}"})
        assert r.status_code == 200
        new_ca = ssl.create_default_context(cafile=str(ca2))
        assert httpx.get(f"https://localhost:{port}/health", verify=new_ca, timeout=2).status_code == 200
    finally:
        p.stop()


def test_ip_allow_lists_trusted_proxies_and_expiry(mock):
    keys = ("  - {name: office, key: sk-test-office-key, allow_ips: [192.168.1.0/24]}\n"
            "  - {name: old, key: sk-test-expired-key, expires_at: 2020-01-01T00:00:00Z}\n")
    o = Ops(mock, server_extra="  trusted_proxies: [127.0.0.1/32]", keys_extra=keys)
    try:
        def call(key, xff=None):
            h = {"authorization": f"Bearer {key}"}
            if xff:
                h["x-forwarded-for"] = xff
            return httpx.post(o.base_url + "/v1/chat/completions", headers=h, timeout=10,
                              json={"model": "gpt-4o-mini", "messages": USER})
        r = call("sk-test-office-key")
        assert r.status_code == 403 and r.json()["error"]["code"] == "ip_not_allowed"
        assert call("sk-test-office-key", "192.168.1.20").status_code == 200
        assert call("sk-test-office-key", "10.9.9.9").status_code == 403
        r = call("sk-test-expired-key")
        assert r.status_code == 401 and r.json()["error"]["code"] == "expired_api_key"
    finally:
        o.stop()
    # Without trusted proxies, X-Forwarded-For is the client's word and is ignored.
    o = Ops(mock, keys_extra=keys)
    try:
        r = httpx.post(o.base_url + "/v1/chat/completions", timeout=10, json={"model": "gpt-4o-mini", "messages": USER},
                       headers={"authorization": "Bearer sk-test-office-key", "x-forwarded-for": "192.168.1.20"})
        assert r.status_code == 403
    finally:
        o.stop()


def test_graceful_binary_upgrade_under_load(ops):
    """A second process started with --upgrade takes the listening socket; the first, sent
    SIGQUIT, hands it over and finishes what it has in flight."""
    stop, results = threading.Event(), []
    threads = [threading.Thread(target=load, args=(ops.base_url, stop, results, i % 2 == 0)) for i in range(4)]
    long_streams = []

    def long_stream():
        with httpx.Client(timeout=30) as c:
            r = c.post(ops.base_url + "/v1/chat/completions", headers={"authorization": f"Bearer {DEMO_KEY}"},
                       json={"model": "gpt-4o-mini", "stream": True,
                             "messages": [{"role": "user", "content": "go [[mock words=150 chunk_delay_ms=10]]"}]})
            events = sse_events(r.text)
            long_streams.append(r.status_code == 200 and events[-1] == "[DONE]" and len(events) > 150)

    for t in threads:
        t.start()
    new = None
    try:
        time.sleep(0.5)
        new = Process(["serve", "-c", str(ops.path), "--upgrade"], "upgraded")
        time.sleep(1.0)  # the new process waits on the upgrade socket
        streamers = [threading.Thread(target=long_stream) for _ in range(3)]
        for t in streamers:
            t.start()
        time.sleep(0.3)
        ops.process.proc.send_signal(signal.SIGQUIT)
        ops.process.proc.wait(timeout=20)
        for t in streamers:
            t.join()
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join()
    try:
        failures = [r for r in results if r is not True]
        assert len(results) > 100
        assert failures == [], failures[:5]
        assert long_streams == [True, True, True], "streams in flight completed"
        assert httpx.get(ops.base_url + "/health").status_code == 200, "the new process serves"
    finally:
        if new:
            new.stop()


def test_systemd_unit_verifies(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is missing: scripts/test installs systemd")
    unit = (ROOT / "systemd" / "modelmux.service").read_text()
    assert "ExecReload=/bin/kill -HUP $MAINPID" in unit and "NoNewPrivileges=yes" in unit
    # verify checks that the binary exists: point it at the one under test.
    (tmp_path / "modelmux.service").write_text(unit.replace("/usr/local/bin/modelmux", str(BIN)))
    r = subprocess.run([analyze, "verify", str(tmp_path / "modelmux.service")], capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr.strip() == "", r.stdout + r.stderr


def test_kubernetes_manifests_validate():
    k8s = ROOT / "deploy" / "kubernetes"
    kustomization = (k8s / "kustomization.yaml").read_text()
    files = sorted(p for p in k8s.glob("*.yaml") if p.name != "kustomization.yaml")
    for f in files:
        assert f"- {f.name}" in kustomization, f"{f.name} is not in the kustomization"
    validate = [sys.executable, "-m", "kubernetes_validate"]
    r = subprocess.run([*validate, "--strict", *map(str, files)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    # The config is generated into a ConfigMap named by its hash, so a change rolls the pods.
    assert "configMapGenerator:" in kustomization and "config/modelmux.yaml" in kustomization
    config = (k8s / "config" / "modelmux.yaml").read_text()
    env = {"MODELMUX_ADMIN_KEY": "k" * 20, "OPENAI_API_KEY": "x", "ANTHROPIC_API_KEY": "x",
           "TEAM_A_KEY": "sk-team-a-0123456789"}
    path = Path(tempfile.mkdtemp()) / "k8s.yaml"
    path.write_text(config)
    r = subprocess.run([str(BIN), "check", "-c", str(path)], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_dockerfile_builds_what_the_manifests_run():
    """No container runtime here: the Dockerfile is checked against the manifests it serves
    (user, config path, ports) and its build against the project's own files."""
    docker = (ROOT / "Dockerfile").read_text()
    deployment = (ROOT / "deploy" / "kubernetes" / "deployment.yaml").read_text()
    assert "USER 65532:65532" in docker and "runAsUser: 65532" in deployment
    assert '"/etc/modelmux/modelmux.yaml"' in docker and '"-c", "/etc/modelmux/modelmux.yaml"' in deployment
    # The shipped build's profile (whole-program LTO) is one Cargo.toml defines, and the
    # binary copied out is the one it builds.
    assert "cargo build --profile dist --locked" in docker and "distroless" in docker
    assert "[profile.dist]" in (ROOT / "Cargo.toml").read_text()
    assert "COPY --from=build /src/target/dist/modelmux " in docker
    for port in ("8080", "9091"):
        assert port in docker.split("EXPOSE", 1)[1].splitlines()[0] and f"containerPort: {port}" in deployment
    for copied in re.findall(r"^COPY (?!--from)(\S+)", docker, re.M):
        assert (ROOT / copied).exists(), copied
    assert "name: modelmux\n    newName:" in (ROOT / "deploy" / "kubernetes" / "kustomization.yaml").read_text()
    assert "image: modelmux:" in deployment


def test_grafana_dashboard_is_a_dashboard_over_the_gateway_metrics():
    """Valid dashboard JSON covering each topic; that every query names an exported metric is
    checked by the unit test `metrics::tests::the_dashboard_names_only_exported_metrics`."""
    dash = json.loads((ROOT / "deploy" / "grafana" / "modelmux.json").read_text())
    assert dash["title"] and dash["uid"] and dash["schemaVersion"] >= 30
    for p in dash["panels"]:
        assert p["type"] and p["gridPos"] and p["targets"], p["title"]
        assert all(re.search(r"modelmux_[a-z_]+", t["expr"]) for t in p["targets"]), p["title"]
    titles = " ".join(p["title"].lower() for p in dash["panels"])
    for topic in ("requests", "errors", "first token", "tokens", "cost", "breakers", "limits"):
        assert topic in titles, topic
    # Every alert rule is drawn: its expression (less the threshold) is a panel's query.
    queries = {" ".join(t["expr"].split()) for p in dash["panels"] for t in p["targets"]}
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yaml").read_text())["groups"][0]["rules"]
    for rule in rules:
        shown = " ".join(re.sub(r"\s*(>|==)\s*[0-9.]+\s*$", "", rule["expr"].strip()).split())
        assert any(shown in q for q in queries), (rule["alert"], shown)
