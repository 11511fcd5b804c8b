"""What an operator configures is what runs (issue 21): a reload reaches requests on connections
the official SDK keeps in its pool; a failed attempt's error counts against its own target,
not the one that answered after a failover; the offline config never sends a developer's real
key to a mock, and a vendor that refuses the gateway's credentials is not asked again and is
named with the variable they came from; diagnostics go to stderr."""

import json
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import openai
import pytest

from conftest import BIN, DEMO_KEY, ROOT, free_port, mock_providers, running_gateway, sse_events, wait_http

ADMIN_KEY = "sk-config-admin-key-0123"
USER = [{"role": "user", "content": "Hello there"}]


def config(mock, admin_port, extra_models="", keys=f"  - {{name: all, key: {DEMO_KEY}}}\n"):
    def make(port, metrics):
        return f"""
server: {{listen: ["127.0.0.1:{port}"]}}
metrics: {{listen: "127.0.0.1:{metrics}"}}
admin: {{listen: "127.0.0.1:{admin_port}", key: {ADMIN_KEY}}}
providers:
{mock_providers(mock, "openai", "anthropic")}
models:
  gpt-4o-mini: {{targets: [{{provider: openai, model: gpt-4o-mini}}]}}
{extra_models}keys:
{keys}"""
    return make


def reload(admin_port):
    r = httpx.post(f"http://127.0.0.1:{admin_port}/admin/reload",
                   headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=30)
    assert r.status_code == 200 and r.json()["status"] == "reloaded", r.text


def test_a_reload_reaches_the_sdks_pooled_connections(mock):
    """One pooled client (one connection, kept alive) sees a new model, a changed route and a
    revoked key on its very next request after the reload."""
    admin_port = free_port()
    make = config(mock, admin_port, keys=f"  - {{name: all, key: {DEMO_KEY}}}\n  - {{name: doomed, key: sk-config-doomed-key}}\n")
    with running_gateway(make) as gw:
        http = httpx.Client(limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))
        client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=DEMO_KEY, max_retries=0, http_client=http)
        doomed = openai.OpenAI(base_url=gw.base_url + "/v1", api_key="sk-config-doomed-key", max_retries=0,
                               http_client=http)
        assert client.chat.completions.create(model="gpt-4o-mini", messages=USER).choices
        assert doomed.chat.completions.create(model="gpt-4o-mini", messages=USER).choices
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="added", messages=USER)

        text = Path(gw.conf).read_text()
        text = text.replace("  - {name: doomed, key: sk-config-doomed-key}\n", "")
        text = text.replace("keys:", "  added: {targets: [{provider: anthropic, model: claude-x}]}\nkeys:")
        text = text.replace("{provider: openai, model: gpt-4o-mini}", "{provider: anthropic, model: claude-y}")
        Path(gw.conf).write_text(text)
        reload(admin_port)

        added = client.chat.completions.with_raw_response.create(model="added", messages=USER)
        assert added.headers["x-modelmux-target"] == "anthropic/claude-x"
        moved = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=USER)
        assert moved.headers["x-modelmux-target"] == "anthropic/claude-y"
        with pytest.raises(openai.AuthenticationError):
            doomed.chat.completions.create(model="gpt-4o-mini", messages=USER)
        # The old route's series went with it.
        assert gw.metric("modelmux_requests_total", model="gpt-4o-mini", provider="openai",
                         target="openai/gpt-4o-mini", status="200") is None
        # All of it on the one connection the pool kept.
        assert gw.metric("modelmux_requests_total", model="gpt-4o-mini", provider="anthropic",
                         target="anthropic/claude-y", status="200") == 1


def test_a_failed_attempt_counts_against_its_own_target(mock):
    def make(port, metrics):
        return f"""
server: {{listen: ["127.0.0.1:{port}"]}}
metrics: {{listen: "127.0.0.1:{metrics}"}}
providers:
  - {{name: down, kind: openai_compatible, base_url: "http://127.0.0.1:{free_port()}/v1"}}
{mock_providers(mock, "openai")}
models:
  ha:
    targets:
      - {{provider: down, model: x, priority: 0}}
      - {{provider: openai, model: gpt-4o-mini, priority: 1}}
    retry: {{attempts: 2, backoff: 5ms}}
breaker: {{consecutive_failures: 1000, min_requests: 1000}}
keys: [{{name: all, key: {DEMO_KEY}}}]
"""
    with running_gateway(make) as gw:
        for _ in range(3):
            r = gw.post_raw("/v1/chat/completions", '{"model": "ha", "messages": [{"role": "user", "content": "hi"}]}')
            assert r.status_code == 200 and r.headers["x-modelmux-target"] == "openai/gpt-4o-mini"
        assert gw.metric("modelmux_upstream_errors_total", provider="down", kind="upstream_connect") == 3
        assert gw.metric("modelmux_upstream_errors_total", provider="openai", kind="upstream_connect") is None


def test_diagnostics_go_to_stderr_and_the_access_log_to_stdout(mock, tmp_path):
    port = free_port()
    conf = tmp_path / "c.yaml"
    conf.write_text(f"""
server: {{listen: ["127.0.0.1:{port}"]}}
log: {{format: json}}
providers:
{mock_providers(mock, "openai")}
models: {{m: {{targets: [{{provider: openai, model: m}}]}}}}
keys: [{{name: all, key: {DEMO_KEY}}}]
""")
    out, err = open(tmp_path / "out", "w"), open(tmp_path / "err", "w")
    p = subprocess.Popen([str(BIN), "serve", "-c", str(conf)], stdout=out, stderr=err)
    try:
        wait_http(f"http://127.0.0.1:{port}/health")
        httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", headers={"authorization": f"Bearer {DEMO_KEY}"},
                   json={"model": "m", "messages": USER})
        time.sleep(0.3)
    finally:
        p.terminate()
        p.wait(timeout=15)
    stdout, stderr = (tmp_path / "out").read_text(), (tmp_path / "err").read_text()
    assert "listening on" in stderr and "listening on" not in stdout
    lines = [l for l in stdout.splitlines() if l.strip()]
    assert lines and all(l.startswith("{") for l in lines), stdout


class offline_gateway:
    """`modelmux serve` on the shipped offline config (mocks inside), on free ports."""

    def __init__(self, tmp_path, env=None):
        text = (ROOT / "conf" / "modelmux.yaml").read_text()
        self.port, metrics, admin = free_port(), free_port(), free_port()
        text = text.replace("127.0.0.1:8080", f"127.0.0.1:{self.port}")
        text = text.replace("127.0.0.1:9091", f"127.0.0.1:{metrics}").replace("127.0.0.1:8081", f"127.0.0.1:{admin}")
        self.conf = tmp_path / "modelmux.yaml"
        self.conf.write_text(text)
        for d in ("apps", "workflows"):
            (tmp_path / d).symlink_to(ROOT / "conf" / d)
        self.env = dict(os.environ, **(env or {}))

    def __enter__(self):
        self.proc = subprocess.Popen([str(BIN), "serve", "-c", str(self.conf)], env=self.env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_http(f"http://127.0.0.1:{self.port}/health")
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait(timeout=15)


def test_the_offline_config_never_sends_a_real_key_to_a_mock(tmp_path):
    """With OPENAI_API_KEY exported (as most developers have), the README's first request
    still answers from the mock."""
    env = {"OPENAI_API_KEY": "sk-proj-a-real-developer-key", "ANTHROPIC_API_KEY": "sk-ant-real"}
    with offline_gateway(tmp_path, env) as g:
        for model in ("gpt-4o-mini", "claude-sonnet-4"):
            r = httpx.post(f"http://127.0.0.1:{g.port}/v1/chat/completions",
                           headers={"authorization": "Bearer sk-modelmux-demo"},
                           json={"model": model, "messages": USER}, timeout=30)
            assert r.status_code == 200, r.text


def test_the_readmes_langchain_example_runs(tmp_path):
    pytest.importorskip("langchain_openai")
    import sys
    text = (ROOT / "README.md").read_text()
    example = text.split("With LangChain", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    with offline_gateway(tmp_path) as g:
        code = example.replace("127.0.0.1:8080", f"127.0.0.1:{g.port}")
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    reply, dims = r.stdout.strip().splitlines()[-2:]
    assert reply.startswith("Mock dashscope reply") and int(dims) > 0, r.stdout


def test_refused_credentials_are_not_retried_and_name_their_variable(mock):
    def make(port, metrics):
        return f"""
server: {{listen: ["127.0.0.1:{port}"]}}
providers:
  - {{name: openai, kind: openai, base_url: "{mock.url("openai")}/v1", api_key: "${{CONFIG_TEST_OPENAI_KEY}}"}}
models:
  m: {{targets: [{{provider: openai, model: gpt-4o-mini}}], retry: {{attempts: 3, backoff: 5ms}}}}
keys: [{{name: all, key: {DEMO_KEY}}}]
"""
    with running_gateway(make, env={"CONFIG_TEST_OPENAI_KEY": "sk-wrong-but-real-looking"}) as gw:
        before = mock.stats("openai")["requests"]
        r = gw.post_raw("/v1/chat/completions", '{"model": "m", "messages": [{"role": "user", "content": "hi"}]}')
        assert r.status_code == 502, r.text
        message = r.json()["error"]["message"]
        assert "Provider `openai`" in message and "$CONFIG_TEST_OPENAI_KEY" in message, message
        assert "sk-wrong-but-real-looking" not in r.text
        assert mock.stats("openai")["requests"] == before + 1
        assert r.headers["x-modelmux-target"] == "openai/gpt-4o-mini"


def stream_events(base_url, words, delay_ms, out):
    """A chat stream of `words` words, one per `delay_ms`: its events, or the error that cut it."""
    try:
        with httpx.Client(timeout=60) as c:
            with c.stream("POST", base_url + "/v1/chat/completions",
                          headers={"authorization": f"Bearer {DEMO_KEY}"},
                          json={"model": "gpt-4o-mini", "stream": True, "messages": [
                              {"role": "user", "content": f"go [[mock words={words} chunk_delay_ms={delay_ms}]]"}]}) as r:
                out["events"] = sse_events(r.read().decode())
    except Exception as e:  # a silent cut shows here
        out["error"] = repr(e)


def load(base_url, stop, results):
    """Chat requests in a loop, on a pooled connection and on fresh ones, until `stop`."""
    with httpx.Client(base_url=base_url, timeout=20) as pooled:
        while not stop.is_set():
            for c in (pooled, None):
                try:
                    r = (c or httpx).post(base_url + "/v1/chat/completions" if c is None else "/v1/chat/completions",
                                          headers={"authorization": f"Bearer {DEMO_KEY}"},
                                          json={"model": "gpt-4o-mini", "messages": USER}, timeout=20)
                    results.append(r.status_code == 200 or f"{r.status_code} {r.text[:200]}")
                except httpx.HTTPError as e:
                    results.append(f"{type(e).__name__}: {e}")
            time.sleep(0.02)


def test_an_upgrade_ends_no_stream_silently(mock, tmp_path):
    """Across SIGQUIT with a 5 s grace period, under load: a stream of 3 s finishes, a stream of
    10 s ends with the in-band error event and [DONE]; every other request is answered; the old
    process exits once it has nothing left, with an access line for each stream."""
    import threading
    from conftest import Process
    port = free_port()
    conf = tmp_path / "c.yaml"
    conf.write_text(f"""
server: {{listen: ["127.0.0.1:{port}"], grace_period_seconds: 5, upgrade_sock: "{tmp_path}/run/upgrade.sock"}}
log: {{format: json}}
providers:
{mock_providers(mock, "openai")}
models: {{gpt-4o-mini: {{targets: [{{provider: openai, model: gpt-4o-mini}}]}}}}
keys: [{{name: all, key: {DEMO_KEY}}}]
""")
    old = Process(["serve", "-c", str(conf)], "old")
    new = None
    stop, results = threading.Event(), []
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/health")
        loaders = [threading.Thread(target=load, args=(base, stop, results)) for _ in range(3)]
        short, long_ = {}, {}
        streams = [threading.Thread(target=stream_events, args=(base, 30, 100, short)),
                   threading.Thread(target=stream_events, args=(base, 100, 100, long_))]
        for t in loaders + streams:
            t.start()
        new = Process(["serve", "-c", str(conf), "--upgrade"], "new")
        time.sleep(0.5)
        old.proc.send_signal(signal.SIGQUIT)
        for t in streams:
            t.join(timeout=30)
        old.proc.wait(timeout=15)
        time.sleep(0.5)
        stop.set()
        for t in loaders:
            t.join()
        failures = [r for r in results if r is not True]
        assert len(results) > 50 and failures == [], failures[:5]
        assert "error" not in short and short["events"][-1] == "[DONE]", short
        assert short["events"][-2]["choices"][0]["finish_reason"] == "stop"
        assert "error" not in long_, long_
        assert long_["events"][-1] == "[DONE]" and "shutting down" in long_["events"][-2]["error"]["message"]
        log = old.output()
        assert "handed to pid" in log and "ending 1 request(s)" in log
        lines = [json.loads(l) for l in log.splitlines() if l.startswith("{")]
        assert len([l for l in lines if l["stream"]]) == 2, log[-3000:]
        assert httpx.get(base + "/health").status_code == 200
    finally:
        stop.set()
        old.stop()
        if new:
            new.stop()


def test_a_reload_reaches_an_http2_connection(mock, tmp_path):
    """Each HTTP/2 stream reads the config in force when it starts, like each HTTP/1 request."""
    from conftest import Process, make_certificates
    _, ca, cert, key = make_certificates()
    port, admin_port = free_port(), free_port()
    conf = tmp_path / "c.yaml"
    text = f"""
server: {{listen: ["127.0.0.1:{port}"], tls: {{cert: "{cert}", key: "{key}"}}}}
admin: {{listen: "127.0.0.1:{admin_port}", key: {ADMIN_KEY}}}
providers:
{mock_providers(mock, "openai")}
models: {{gpt-4o-mini: {{targets: [{{provider: openai, model: gpt-4o-mini}}]}}}}
keys: [{{name: all, key: {DEMO_KEY}}}, {{name: doomed, key: sk-config-doomed-key}}]
"""
    conf.write_text(text)
    p = Process(["serve", "-c", str(conf)], "h2")
    try:
        import ssl
        context = ssl.create_default_context(cafile=str(ca))
        with httpx.Client(http2=True, verify=context, base_url=f"https://localhost:{port}") as c:
            deadline = time.time() + 20
            while True:
                try:
                    c.get("/health")
                    break
                except httpx.HTTPError:
                    assert time.time() < deadline
                    time.sleep(0.1)
            call = lambda: c.post("/v1/chat/completions", headers={"authorization": "Bearer sk-config-doomed-key"},
                                  json={"model": "gpt-4o-mini", "messages": USER})
            first = call()
            assert first.http_version == "HTTP/2" and first.status_code == 200
            conf.write_text(text.replace(", {name: doomed, key: sk-config-doomed-key}", ""))
            reload(admin_port)
            again = call()
            assert again.http_version == "HTTP/2" and again.status_code == 401
    finally:
        p.stop()


def test_sigterm_on_an_idle_gateway_exits_at_once(mock, tmp_path):
    port = free_port()
    conf = tmp_path / "c.yaml"
    conf.write_text(f"""
server: {{listen: ["127.0.0.1:{port}"], grace_period_seconds: 30}}
providers:
{mock_providers(mock, "openai")}
models: {{m: {{targets: [{{provider: openai, model: m}}]}}}}
keys: [{{name: all, key: {DEMO_KEY}}}]
""")
    from conftest import Process
    p = Process(["serve", "-c", str(conf)], "idle")
    wait_http(f"http://127.0.0.1:{port}/health")
    started = time.time()
    p.proc.send_signal(signal.SIGTERM)
    p.proc.wait(timeout=20)
    assert time.time() - started < 5
    assert "draining" in p.output()
    # Its own socket (for compare) is gone with it.
    assert not (Path(tempfile.gettempdir()) / f"modelmux-{p.proc.pid}.sock").exists()


def test_a_configmap_update_is_noticed(mock, tmp_path):
    """Kubelet updates a mounted ConfigMap by writing a new timestamped directory and swapping
    the `..data` symlink the file points through; the watch sees the new file."""
    port = free_port()

    def text(extra):
        return f"""
server: {{listen: ["127.0.0.1:{port}"], watch_config: true}}
providers:
{mock_providers(mock, "openai")}
models:
  gpt-4o-mini: {{targets: [{{provider: openai, model: gpt-4o-mini}}]}}
{extra}keys: [{{name: all, key: {DEMO_KEY}}}]
"""
    mount = tmp_path / "etc"
    (mount / "..2026_01_01").mkdir(parents=True)
    (mount / "..2026_01_01" / "modelmux.yaml").write_text(text(""))
    (mount / "..data").symlink_to("..2026_01_01")
    (mount / "modelmux.yaml").symlink_to("..data/modelmux.yaml")
    from conftest import Process
    p = Process(["serve", "-c", str(mount / "modelmux.yaml")], "configmap")
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/health")
        client = openai.OpenAI(base_url=base + "/v1", api_key=DEMO_KEY, max_retries=0)
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="added", messages=USER)
        (mount / "..2026_01_02").mkdir()
        (mount / "..2026_01_02" / "modelmux.yaml").write_text(
            text("  added: {targets: [{provider: openai, model: gpt-4o}]}\n"))
        (mount / "..data_tmp").symlink_to("..2026_01_02")
        os.rename(mount / "..data_tmp", mount / "..data")
        import shutil
        shutil.rmtree(mount / "..2026_01_01")
        deadline = time.time() + 10
        while True:
            try:
                client.chat.completions.create(model="added", messages=USER)
                break
            except openai.NotFoundError:
                assert time.time() < deadline, p.output()
                time.sleep(0.2)
    finally:
        p.stop()


def test_a_read_only_config_directory_makes_a_read_only_console(mock, tmp_path):
    """As under the shipped systemd unit (ProtectSystem=strict) or a ConfigMap mount: the
    console says why it cannot save and switches saving off, instead of failing every save."""
    import shutil
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    playwright = pytest.importorskip("playwright.sync_api")
    if os.geteuid() != 0 or not chromium:
        pytest.skip("needs root (to run the gateway as another user) and Chromium")
    import tempfile
    base = Path(tempfile.mkdtemp(prefix="modelmux-ro-"))
    os.chmod(base, 0o755)
    etc, run = base / "etc", base / "run"
    etc.mkdir()
    run.mkdir(mode=0o700)
    os.chown(run, 65534, 65534)
    port, admin_port = free_port(), free_port()
    conf = etc / "modelmux.yaml"
    conf.write_text(f"""
server: {{listen: ["127.0.0.1:{port}"], upgrade_sock: "{run}/upgrade.sock"}}
admin: {{listen: "127.0.0.1:{admin_port}", key: {ADMIN_KEY}}}
providers:
{mock_providers(mock, "openai")}
models: {{gpt-4o-mini: {{targets: [{{provider: openai, model: gpt-4o-mini}}]}}}}
keys: [{{name: all, key: {DEMO_KEY}}}]
""")
    os.chmod(conf, 0o644)

    def as_nobody():
        os.setgid(65534)
        os.setuid(65534)
    log = open(tmp_path / "log", "w")
    p = subprocess.Popen([str(BIN), "serve", "-c", str(conf)], preexec_fn=as_nobody, stdout=log,
                         stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/health")
        h = {"authorization": f"Bearer {ADMIN_KEY}"}
        admin = f"http://127.0.0.1:{admin_port}"
        routes = httpx.get(admin + "/console/api/routes", headers=h).json()
        assert "read-only" in routes["read_only"], routes
        r = httpx.post(admin + "/console/api/routes/save", headers=h, json={"yaml": routes["yaml"]})
        assert r.status_code == 409 and "read-only" in r.json()["error"]["message"]
        with playwright.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page()
            page.goto(admin + "/")
            page.fill("#login-key", ADMIN_KEY)
            page.click("#login-form button")
            page.wait_for_selector("#app:not([hidden])")
            page.click("header [data-tab=routes]")
            playwright.expect(page.locator("#routes-message")).to_contain_text("Read-only")
            assert page.locator("#routes-save").is_disabled()
            browser.close()
    finally:
        p.terminate()
        p.wait(timeout=15)
        shutil.rmtree(base, ignore_errors=True)


def test_idle_kept_alive_connections_follow_keepalive_not_the_header_deadline(mock):
    import socket

    def make(port, metrics):
        return f"""
server:
  listen: ["127.0.0.1:{port}"]
  clients: {{header_timeout: 1s, keepalive: 3s}}
metrics: {{listen: "127.0.0.1:{metrics}"}}
providers:
{mock_providers(mock, "openai")}
models: {{m: {{targets: [{{provider: openai, model: m}}]}}}}
keys: [{{name: all, key: {DEMO_KEY}}}]
"""
    get = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    with running_gateway(make) as gw:
        # The public listener and the metrics listener (as the admin one) alike.
        for port in (gw.port, gw.metrics_port):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(get)
                assert s.recv(4096).startswith(b"HTTP/1.1 200")
                time.sleep(2)  # past the header deadline, within keepalive
                s.sendall(get)
                assert s.recv(4096).startswith(b"HTTP/1.1 200"), port
                started = time.time()
                assert s.recv(4096) == b""  # closed once keepalive has passed
                assert 2 < time.time() - started < 5
        with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as s:
            s.sendall(get)
            assert s.recv(4096).startswith(b"HTTP/1.1 200")
            s.sendall(b"GET /health HTTP/1.1\r\n")  # the next header begun, then trickled
            started = time.time()
            assert s.recv(4096) == b""
            assert time.time() - started < 2.5


def test_an_upgrade_waits_quietly_for_sigquit(mock, tmp_path):
    """`serve --upgrade` waits as long as the operator takes (past Pingora's own five seconds)
    without an error a second, then takes over."""
    from conftest import Process
    port = free_port()
    conf = tmp_path / "c.yaml"
    conf.write_text(f"""
server: {{listen: ["127.0.0.1:{port}"], grace_period_seconds: 1, upgrade_sock: "{tmp_path}/run/upgrade.sock"}}
providers:
{mock_providers(mock, "openai")}
models: {{m: {{targets: [{{provider: openai, model: m}}]}}}}
keys: [{{name: all, key: {DEMO_KEY}}}]
""")
    old = Process(["serve", "-c", str(conf)], "old")
    new = None
    try:
        wait_http(f"http://127.0.0.1:{port}/health")
        new = Process(["serve", "-c", str(conf), "--upgrade"], "new")
        time.sleep(6.5)
        assert new.proc.poll() is None, new.output()
        waiting = new.output()
        assert "waiting on" in waiting and "ERROR" not in waiting, waiting
        old.proc.send_signal(signal.SIGQUIT)
        old.proc.wait(timeout=15)
        r = httpx.get(f"http://127.0.0.1:{port}/health")
        assert r.status_code == 200
        assert "ERROR" not in new.output(), new.output()
    finally:
        old.stop()
        if new:
            new.stop()


def check(path, env=None):
    return subprocess.run([str(BIN), "check", "-c", str(path)], capture_output=True, text=True,
                          env=dict(os.environ, **(env or {})))


def test_check_reports_root_causes_in_the_files_words(tmp_path):
    conf = tmp_path / "c.yaml"
    conf.write_text("""
server: {threads: -1}
providers:
  - {name: openai, kind: openai, base_url: "http://127.0.0.1:1/v1", api_key: sk-test}
modles:
  a: {targets: [{provider: openai, model: x}]}
keys:
  - {name: k, key: sk-12345678, models: [a], limits: {rpm: 1.5}}
apps: {dir: nowhere}
workflows: {dir: workflows}
""")
    (tmp_path / "workflows").mkdir()
    r = check(conf)
    lines = r.stderr.strip().splitlines()[1:]
    assert r.returncode == 1
    assert lines == [
        "modles: unknown section; did you mean `models`?",
        "server.threads: invalid value: the number `-1`, expected a whole number (0 or more)",
        "keys[0].limits.rpm: invalid type: the number `1.5`, expected a whole number (0 or more)",
        f"apps.dir: cannot read the directory {tmp_path}/nowhere: No such file or directory (os error 2)",
    ], r.stderr
    conf.write_text("""
providers:
  - {name: openai, kind: openai, base_url: "http://127.0.0.1:1/v1", api_key: sk-test, timeouts: {first_byte: 30}}
models:
  a: {targets: [{provider: openai, model: x}], retry: {attempts: many}}
keys: [{name: k, key: sk-12345678, models: [a]}]
""")
    lines = check(conf).stderr.strip().splitlines()[1:]
    # The provider and the model are each reported once; nothing that names them is.
    assert lines == [
        "providers[0].timeouts.first_byte: `30` is not a duration: write one like 30s, 500ms or 2m",
        "models.a.retry.attempts: invalid type: string \"many\", expected a whole number (0 or more)",
    ], lines


def test_the_readmes_configuration_reference_is_a_valid_config(tmp_path):
    text = (ROOT / "README.md").read_text()
    reference = text.split("## Configuration reference", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    conf = tmp_path / "reference.yaml"
    conf.write_text(reference)
    for d in ("apps", "workflows"):
        (tmp_path / d).mkdir()
    env = {v: "sk-reference-value" for v in (
        "OPENAI_API_KEY", "DEEPSEEK_API_KEY", "ZHIPU_KEY_ID", "ZHIPU_SECRET", "QIANFAN_CLIENT_ID",
        "QIANFAN_CLIENT_SECRET", "DASHSCOPE_API_KEY", "MODELMUX_KEY_APP")}
    r = check(conf, env)
    assert r.returncode == 0, r.stdout + r.stderr
