"""The attacks of issue 20, each replayed against a running gateway: every test here failed (or
hung, or leaked) on the gateway before the fix and passes after. Test names carry the item's
number."""

import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import httpx
import pytest

from conftest import BIN, DEMO_KEY, Process, free_port, mock_providers, running_gateway, wait_http

ADMIN_KEY = "sk-attack-admin-key-0123"
LIMITED_KEY = "sk-attack-only-mini"
IP_KEY = "sk-attack-ip-bound"
WF_KEY = "sk-attack-workflows"
SECRET = "sk-leak-me-0123456789"
QIANFAN_SECRET = "qf/secret+value=xyz"


class Fake:
    """A tiny HTTP server on loopback answering with `handle(method, path) -> (status, json)`,
    recording every request it gets."""

    def __init__(self, handle, host="127.0.0.1"):
        self.requests = []
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def _serve(self):
                length = int(self.headers.get("content-length") or 0)
                if length:
                    self.rfile.read(length)
                outer.requests.append((self.command, self.path))
                status, body = handle(self.command, self.path)
                data = json.dumps(body).encode() if not isinstance(body, bytes) else body
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _serve

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer((host, 0), H)
        self.url = f"http://{host}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


@pytest.fixture(scope="module")
def fakes():
    # Where a hostile vendor reply points the gateway: another loopback address.
    inner = Fake(lambda m, p: (200, b"\x89PNG\r\n\x1a\nsecret"), host="127.0.0.2")

    def dashscope(method, path):
        if method == "POST":
            return 200, {"output": {"task_id": "t1", "task_status": "PENDING"}, "request_id": "r1"}
        return 200, {"output": {"task_id": "t1", "task_status": "SUCCEEDED",
                                "results": [{"url": f"{inner.url}/internal/metadata.png"}]}}

    ds = Fake(dashscope)
    # A token endpoint that refuses, echoing the URL it was called with (as the attacker saw).
    qf = Fake(lambda m, p: (401, {"error": "invalid_client", "error_description": f"refused {p}"}))
    yield {"inner": inner, "dashscope": ds, "qianfan": qf}
    for f in (inner, ds, qf):
        f.close()


def main_config(mock, admin_port, fakes, flows):
    (flows / "grow.yaml").write_text(textwrap.dedent("""
        name: grow
        inputs: {text: string}
        nodes:
""" + "".join(f"          - {{id: n{i}, type: template, template: \"{{{{{'inputs.text' if i == 0 else f'n{i-1}.output'}}}}}{{{{{'inputs.text' if i == 0 else f'n{i-1}.output'}}}}}\"}}\n" for i in range(30)) + """
        edges:
""" + "".join(f"          - {{from: n{i-1}, to: n{i}}}\n" for i in range(1, 30))))
    (flows / "echo.yaml").write_text(textwrap.dedent("""
        name: echo
        inputs: {text: string}
        nodes:
          - {id: out, type: template, template: "echo {{inputs.text}}"}
        edges: []
    """))

    def make(port, metrics):
        return f"""
server:
  listen: ["127.0.0.1:{port}"]
  trusted_proxies: ["127.0.0.0/8"]
metrics: {{listen: "127.0.0.1:{metrics}"}}
admin: {{listen: "127.0.0.1:{admin_port}", key: {ADMIN_KEY}}}
providers:
{mock_providers(mock, "openai")}
  - {{name: ds-hostile, kind: dashscope, base_url: "{fakes["dashscope"].url}", api_key: sk-ds}}
  - {{name: qf-refusing, kind: qianfan, api_version: v1, base_url: "{mock.url("qianfan")}",
      token_url: "{fakes["qianfan"].url}/oauth/2.0/token", client_id: qf-client-id-123,
      client_secret: "{QIANFAN_SECRET}"}}
models:
  gpt-4o-mini: {{targets: [{{provider: openai, model: gpt-4o-mini}}]}}
  plain-emb: {{targets: [{{provider: openai, model: text-embedding-3-small}}]}}
  redacted-emb: {{targets: [{{provider: openai, model: text-embedding-3-small}}], redact_pii: true}}
  redacted-img: {{targets: [{{provider: openai, model: dall-e-2}}], redact_pii: true}}
  hostile-wanx: {{targets: [{{provider: ds-hostile, model: wanx2.1-t2i-turbo}}], retry: {{attempts: 1}}}}
  ernie: {{targets: [{{provider: qf-refusing, model: completions_pro}}], retry: {{attempts: 1}}}}
workflows: {{dir: "{flows}"}}
keys:
  - {{name: all, key: {DEMO_KEY}}}
  - {{name: limited, key: {LIMITED_KEY}, models: [gpt-4o-mini]}}
  - {{name: ipbound, key: {IP_KEY}, allow_ips: ["203.0.113.0/24"]}}
  - {{name: flows, key: {WF_KEY}, models: [gpt-4o-mini, "workflow/*"]}}
"""
    return make


@pytest.fixture(scope="module")
def gw(mock, fakes):
    admin_port = free_port()
    with tempfile.TemporaryDirectory() as flows:
        with running_gateway(main_config(mock, admin_port, fakes, Path(flows))) as g:
            g.admin_url = f"http://127.0.0.1:{admin_port}"
            yield g


def admin(gw, method, path, **kw):
    h = {"authorization": f"Bearer {ADMIN_KEY}"}
    return httpx.request(method, gw.admin_url + path, headers=h, timeout=30, **kw)


def raw_exchange(port, data, wait=0.5, host="127.0.0.1"):
    """Sends raw bytes, then reads until the server closes or goes quiet."""
    with socket.create_connection((host, port), timeout=5) as s:
        s.sendall(data)
        time.sleep(wait)
        s.settimeout(2)
        out = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
        except (socket.timeout, ConnectionResetError):
            pass
    return out


def editor_gateway(mock, tmp_path, mode=0o600, env=None):
    """A gateway of its own whose routes the console may rewrite."""
    admin_port = free_port()

    def make(port, metrics):
        return f"""# the gateway under edit
server: {{listen: ["127.0.0.1:{port}"]}}
metrics: {{listen: "127.0.0.1:{metrics}"}}
admin: {{listen: "127.0.0.1:{admin_port}", key: {ADMIN_KEY}}}
providers:
{mock_providers(mock, "openai")}
models:
  gpt-4o-mini: {{targets: [{{provider: openai, model: gpt-4o-mini}}]}}
keys: [{{name: all, key: {DEMO_KEY}}}]
"""
    g = running_gateway(make, env=env)
    os.chmod(g.conf, mode)
    g.admin_url = f"http://127.0.0.1:{admin_port}"
    return g


# 1. The route editor reads the environment.
def test_1_the_route_editor_never_expands_or_echoes_the_environment(mock, tmp_path):
    g = editor_gateway(mock, tmp_path, env={"ATTACK_SECRET": SECRET})
    with g as gw:
        gw.admin_url = g.admin_url
        for target in ({"provider": "${ATTACK_SECRET}", "model": "x"},
                       {"provider": "openai", "model": "${ATTACK_SECRET}"}):
            r = admin(gw, "POST", "/console/api/routes/check",
                      json={"models": {"leak": {"targets": [target]}}})
            assert r.status_code == 400, r.text
            assert SECRET not in r.text
            assert "not expanded in models" in r.text
        # Saving is refused the same way: the file never holds a route that reads it.
        r = admin(gw, "POST", "/console/api/routes/save",
                  json={"yaml": "models:\n  leak: {targets: [{provider: openai, model: \"${ATTACK_SECRET}\"}]}\n"})
        assert r.status_code == 400 and SECRET not in r.text
        assert "${ATTACK_SECRET}" not in Path(g.conf).read_text()
    assert SECRET not in gw.process.output()


# 2. The "models only" editor can add other top-level sections.
def test_2_a_multi_line_key_cannot_smuggle_a_section_into_the_file(mock, tmp_path):
    g = editor_gateway(mock, tmp_path)
    with g as gw:
        gw.admin_url = g.admin_url
        original = admin(gw, "GET", "/console/api/routes").json()["yaml"]
        # An explicit key quoted over several lines, one in column 0: on today's main the first
        # save passed and saving the original section again left `cors:` as a real section.
        attack = ('models:\n  gpt-4o-mini: {targets: [{provider: openai, model: gpt-4o-mini}]}\n'
                  '  ? "q\ncors: {max_age: 600, allow_origins: [\'*\', \'\n#"\n'
                  '  : {targets: [{provider: openai, model: x}]} # \']}\n')
        admin(gw, "POST", "/console/api/routes/save", json={"yaml": attack})
        r = admin(gw, "POST", "/console/api/routes/save", json={"yaml": original})
        assert r.status_code == 200, r.text
        text = Path(g.conf).read_text()
        assert "\ncors:" not in text, text
        probe = httpx.options(gw.base_url + "/v1/chat/completions",
                              headers={"origin": "https://evil.example", "access-control-request-method": "POST"})
        assert "access-control-allow-origin" not in probe.headers


# 3. X-Forwarded-For on several header lines.
def test_3_forwarded_for_is_read_over_all_its_lines_from_the_right(gw):
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    h = {"authorization": f"Bearer {IP_KEY}"}
    # The client's own line first; the trusted proxy appends its line with the real address.
    two_lines = [("x-forwarded-for", "203.0.113.5"), ("x-forwarded-for", "198.51.100.7")]
    r = httpx.post(gw.base_url + "/v1/chat/completions", json=body, headers=list(h.items()) + two_lines)
    assert r.status_code == 403, r.text
    assert r.json()["error"]["code"] == "ip_not_allowed"
    r = httpx.post(gw.base_url + "/v1/chat/completions", json=body,
                   headers={**h, "x-forwarded-for": "198.51.100.7, 203.0.113.5"})
    assert r.status_code == 200, r.text


# 4. Amplification.
def test_4_inputs_choices_and_images_are_capped_before_any_vendor_call(gw, mock):
    before = mock.stats("openai")["requests"]
    r = gw.post_raw("/v1/embeddings", json.dumps({"model": "plain-emb", "input": ["a"] * 2049}))
    assert r.status_code == 400 and r.json()["error"]["param"] == "input", r.text
    r = gw.post_raw("/v1/chat/completions", json.dumps(
        {"model": "gpt-4o-mini", "n": 129, "messages": [{"role": "user", "content": "hi"}]}))
    assert r.status_code == 400 and r.json()["error"]["param"] == "n", r.text
    r = gw.post_raw("/v1/images/generations", json.dumps({"model": "redacted-img", "prompt": "x", "n": 11}))
    assert r.status_code == 400 and r.json()["error"]["param"] == "n", r.text
    assert mock.stats("openai")["requests"] == before
    # At the cap, the request is served.
    r = gw.post_raw("/v1/embeddings", json.dumps({"model": "plain-emb", "input": ["a"] * 2048}))
    assert r.status_code == 200 and len(r.json()["data"]) == 2048


# 5. The built-in mock can take the gateway down.
def test_5_the_mock_clamps_every_size_a_client_asks_for(mock):
    r = httpx.post(mock.url("openai") + "/v1/chat/completions", headers={"authorization": "Bearer sk-mock-openai"},
                   json={"model": "m", "messages": [{"role": "user", "content": "go [[mock words=100000000]]"}]},
                   timeout=30)
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 100_000
    r = httpx.post(mock.url("openai") + "/v1/embeddings", headers={"authorization": "Bearer sk-mock-openai"},
                   json={"model": "m", "input": "x", "dimensions": 10 ** 9}, timeout=30)
    assert r.status_code == 200 and len(r.json()["data"][0]["embedding"]) == 4096
    r = httpx.post(mock.url("dashscope") + "/api/v1/services/embeddings/text-embedding/text-embedding",
                   headers={"authorization": "Bearer sk-mock-dashscope"},
                   json={"model": "text-embedding-v3", "input": {"texts": ["x"]}, "parameters": {"dimension": 10 ** 9}},
                   timeout=30)
    assert r.status_code == 200 and len(r.json()["output"]["embeddings"][0]["embedding"]) == 4096


# 6. The upgrade socket.
def test_6_a_shared_upgrade_directory_refuses_the_start(mock, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    conf = tmp_path / "c.yaml"
    conf.write_text(f"""
server: {{listen: ["127.0.0.1:{free_port()}"], upgrade_sock: "{shared}/upgrade.sock"}}
providers:
{mock_providers(mock, "openai")}
models: {{m: {{targets: [{{provider: openai, model: m}}]}}}}
keys: [{{name: all, key: {DEMO_KEY}}}]
""")
    p = subprocess.run([str(BIN), "serve", "-c", str(conf)], capture_output=True, text=True, timeout=20)
    assert p.returncode != 0
    assert "writable by other users" in p.stderr


RECEIVER = """
import array, os, socket, sys
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
os.seteuid(65534)          # listen() as another user: what SO_PEERCRED reports
s.listen(1)
print("ready", flush=True)
s.settimeout(10)
try:
    c, _ = s.accept()
except socket.timeout:
    print("no connection", flush=True)
    sys.exit(0)
fds = array.array("i")
msg, anc, _, _ = c.recvmsg(2048, socket.CMSG_LEN(32 * fds.itemsize))
for level, kind, data in anc:
    fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
print(f"received {len(fds)} sockets, {msg!r}", flush=True)
"""


def test_6_sigquit_hands_the_sockets_only_to_a_receiver_of_the_same_user(mock, tmp_path):
    """A process of another user listening on upgrade_sock gets no socket: the gateway reads
    its credentials (SO_PEERCRED), refuses the SIGQUIT, logs why, and keeps serving."""
    if os.geteuid() != 0:
        pytest.skip("listening as another user needs root")
    private = tmp_path / "run"
    port = free_port()
    conf = tmp_path / "c.yaml"
    conf.write_text(f"""
server: {{listen: ["127.0.0.1:{port}"], upgrade_sock: "{private}/upgrade.sock"}}
providers:
{mock_providers(mock, "openai")}
models: {{m: {{targets: [{{provider: openai, model: m}}]}}}}
keys: [{{name: all, key: {DEMO_KEY}}}]
""")
    p = Process(["serve", "-c", str(conf)], "upgrade-guard")
    try:
        wait_http(f"http://127.0.0.1:{port}/health")
        assert (private.stat().st_mode & 0o777) == 0o700
        receiver = subprocess.Popen([sys.executable, "-c", RECEIVER, str(private / "upgrade.sock")],
                                    stdout=subprocess.PIPE, text=True)
        assert receiver.stdout.readline().strip() == "ready"
        p.proc.send_signal(signal.SIGQUIT)
        out = receiver.communicate(timeout=15)[0]
        assert "received 0 sockets" in out or "no connection" in out, out
        time.sleep(0.5)
        assert p.proc.poll() is None
        assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200
        assert "SIGQUIT refused" in p.output() and "uid 65534" in p.output()
    finally:
        p.stop()


# 7. Panic on redacted embeddings and images.
def test_7_redaction_applies_to_embeddings_and_images_without_a_panic(gw):
    c = gw.client()
    redacted = c.embeddings.create(model="redacted-emb", input=["write to bob@example.com"]).data[0].embedding
    expected = c.embeddings.create(model="plain-emb", input=["write to [REDACTED_EMAIL]"]).data[0].embedding
    assert redacted == expected
    for _ in range(4):
        img = c.images.generate(model="redacted-img", prompt="a card for bob@example.com")
        assert img.data
    assert "panicked" not in gw.process.output()


# 8. Sessions outlive the key.
def test_8_a_new_admin_key_ends_every_console_session(mock, tmp_path):
    g = editor_gateway(mock, tmp_path)
    with g as gw:
        s = httpx.Client(base_url=g.admin_url)
        assert s.post("/console/login", json={"key": ADMIN_KEY}).status_code == 200
        assert s.get("/console/api/session").status_code == 200
        Path(g.conf).write_text(Path(g.conf).read_text().replace(ADMIN_KEY, "sk-attack-new-admin-key"))
        gw.process.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 10
        while time.time() < deadline and s.get("/console/api/session").status_code == 200:
            time.sleep(0.1)
        assert s.get("/console/api/session").status_code == 401
        # Nor does the old key sign in again.
        assert s.post("/console/login", json={"key": ADMIN_KEY}).status_code == 401


# 9. Qianfan credentials in errors.
def test_9_a_refused_token_call_never_shows_the_client_credentials(gw, fakes):
    r = gw.post_raw("/v1/chat/completions", json.dumps({"model": "ernie", "messages": [{"role": "user", "content": "hi"}]}))
    assert r.status_code >= 400
    assert fakes["qianfan"].requests, "the token endpoint was called"
    encoded = QIANFAN_SECRET.replace("/", "%2F").replace("+", "%2B").replace("=", "%3D")
    status = admin(gw, "GET", "/admin/status").text
    for text in (r.text, status, gw.process.output()):
        assert QIANFAN_SECRET not in text and encoded not in text
        assert "qf-client-id-123" not in text


# 10. Sign-in brute force.
def test_10_guessing_the_admin_key_is_slowed_logged_and_counted(mock, tmp_path):
    g = editor_gateway(mock, tmp_path)
    with g as gw:
        codes = [httpx.post(g.admin_url + "/console/login", json={"key": f"guess-{i}"}).status_code for i in range(8)]
        assert codes[:5] == [401] * 5 and set(codes[5:]) == {429}, codes
        r = httpx.post(g.admin_url + "/console/login", json={"key": ADMIN_KEY})
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        # The API key guessed over the API counts too.
        r = httpx.get(g.admin_url + "/admin/status", headers={"authorization": "Bearer nope"})
        assert r.status_code == 429
        assert gw.process.output().count("wrong admin key") >= 5
        assert gw.metric("modelmux_admin_auth_failures_total", result="wrong_key") >= 5


# 11. Config file mode.
def test_11_saving_routes_keeps_the_files_mode(mock, tmp_path):
    g = editor_gateway(mock, tmp_path, mode=0o600)
    with g as gw:
        gw.admin_url = g.admin_url
        r = admin(gw, "POST", "/console/api/routes/save", json={"yaml": (
            "models:\n  gpt-4o-mini: {targets: [{provider: openai, model: gpt-4o-mini}]}\n"
            "  added: {targets: [{provider: openai, model: gpt-4o}]}\n")})
        assert r.status_code == 200, r.text
        assert (os.stat(g.conf).st_mode & 0o777) == 0o600
        assert (os.stat(g.conf + ".bak").st_mode & 0o777) == 0o600
        assert "# the gateway under edit" in Path(g.conf).read_text()


# 12. Generated code.
def test_12_generated_python_never_writes_a_parameter_name_as_code(tmp_path):
    spec = {"models": ["m"], "prompt": "hi", "params": {
        'temperature=__import__("os").system("id")': 1, "import": 2, "temperature": 0.5}}
    out = subprocess.run([str(BIN), "codegen", "--lang", "python"], input=json.dumps(spec),
                         capture_output=True, text=True, check=True).stdout
    import ast
    tree = ast.parse(out)
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)
             and getattr(n.func, "attr", "") == "create"]
    assert calls, out
    names = [k.arg for k in calls[0].keywords]
    assert names == ["model", "messages", "temperature", "extra_body"], names
    assert not any(isinstance(n, ast.Call) and getattr(n.func, "id", "") == "__import__" for n in ast.walk(tree))


# 13. DashScope result URLs.
def test_13_image_results_are_fetched_only_from_the_vendors_hosts(gw, fakes):
    r = gw.post_raw("/v1/images/generations", json.dumps(
        {"model": "hostile-wanx", "prompt": "x", "response_format": "b64_json"}))
    assert r.status_code == 502, r.text
    assert "result_hosts" in r.json()["error"]["message"]
    assert fakes["inner"].requests == []
    assert "secret" not in r.text


# 14. Local budgets reset on restart.
def test_14_budgets_kept_in_memory_are_announced_at_start(mock):
    def make(port, metrics):
        return f"""
server: {{listen: ["127.0.0.1:{port}"]}}
providers:
{mock_providers(mock, "openai")}
models: {{m: {{targets: [{{provider: openai, model: m}}]}}}}
keys: [{{name: capped, key: {DEMO_KEY}, budget: {{tokens: 1000, period: day}}}}]
"""
    with running_gateway(make) as g:
        time.sleep(0.3)
        assert "starts again at zero" in g.process.output()


# 15. Admin-side memory.
def rss_kb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])


def test_15_a_huge_routes_check_and_a_doubling_workflow_are_bounded(gw):
    before = rss_kb(gw.process.proc.pid)
    huge = "models:\n" + "".join(f"  m{i}: x\n" for i in range(300_000))
    r = admin(gw, "POST", "/console/api/routes/check", json={"yaml": huge})
    assert r.status_code == 400 and "lines" in r.text
    assert rss_kb(gw.process.proc.pid) - before < 100_000
    r = gw.post_raw("/v1/workflows/grow/run", json.dumps({"inputs": {"text": "x"}}))
    assert r.status_code == 400 and len(r.content) < 6_000_000, (r.status_code, len(r.content))
    assert "grew past" in r.json()["error"]["message"] or "over" in r.json()["error"]["message"]


# 16. The other listeners.
def test_16_the_admin_listener_reads_no_body_before_the_caller_is_known(gw):
    port = int(gw.admin_url.rsplit(":", 1)[1])
    head = (b"POST /console/api/routes/check HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 4000000\r\n\r\n")
    started = time.time()
    reply = raw_exchange(port, head, wait=0.3)
    assert reply.startswith(b"HTTP/1.1 401"), reply[:80]
    assert time.time() - started < 3


def test_16_other_listeners_have_a_header_deadline_and_a_connection_cap(mock):
    admin_port = free_port()

    def make(port, metrics):
        return f"""
server:
  listen: ["127.0.0.1:{port}"]
  clients: {{header_timeout: 1s, max_connections: 4}}
metrics: {{listen: "127.0.0.1:{metrics}"}}
admin: {{listen: "127.0.0.1:{admin_port}", key: {ADMIN_KEY}}}
providers:
{mock_providers(mock, "openai")}
models: {{m: {{targets: [{{provider: openai, model: m}}]}}}}
keys: [{{name: all, key: {DEMO_KEY}}}]
"""
    with running_gateway(make) as g:
        for port in (g.metrics_port, admin_port):
            # A header trickled in more slowly than the deadline is cut off.
            with socket.create_connection(("127.0.0.1", port)) as s:
                s.sendall(b"GET /health HTTP/1.1\r\n")
                s.settimeout(5)
                started = time.time()
                assert s.recv(100) == b""
                assert time.time() - started < 3
            # Past the cap a connection is closed at once.
            held = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
            for s in held:
                s.sendall(b"GET /health HTTP/1.1\r\n")
            time.sleep(0.2)
            assert raw_exchange(port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", wait=0.2) == b""
            for s in held:
                s.close()
            time.sleep(0.2)
            # A slot given back serves again (the admin listener answers /health with a 401).
            reply = raw_exchange(port, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert reply.startswith((b"HTTP/1.1 200", b"HTTP/1.1 401")), reply[:40]


# Informational: workflows and the key's allow-list; pipelining; RFC 9112 framing.
def test_a_restricted_key_runs_only_the_workflows_it_is_given(gw):
    body = json.dumps({"inputs": {"text": "hi"}})
    r = gw.post_raw("/v1/workflows/echo/run", body, key=LIMITED_KEY)
    assert r.status_code == 403 and r.json()["error"]["code"] == "model_not_allowed"
    chat = json.dumps({"model": "workflow/echo", "messages": [{"role": "user", "content": "hi"}]})
    assert gw.post_raw("/v1/chat/completions", chat, key=LIMITED_KEY).status_code == 403
    r = gw.post_raw("/v1/workflows/echo/run", body, key=WF_KEY)
    assert r.status_code == 200 and r.json()["outputs"] == {"out": "echo hi"}


def test_pipelined_requests_are_answered_in_order(gw):
    reqs = (b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /v1/models/gpt-4o-mini HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + DEMO_KEY.encode() + b"\r\n\r\n"
            b"GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    reply = raw_exchange(gw.port, reqs)
    statuses = [reply[i:i + 12] for i in range(len(reply)) if reply.startswith(b"HTTP/1.1 ", i)]
    assert statuses == [b"HTTP/1.1 200", b"HTTP/1.1 200", b"HTTP/1.1 401"], reply
    assert reply.index(b'"status":"ok"') < reply.index(b'"id":"gpt-4o-mini"')


def test_requests_without_one_host_or_with_bare_lf_are_refused(gw):
    assert raw_exchange(gw.port, b"GET /health HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 400")
    # Each refusal is an OpenAI-shaped error.
    for request in (b"GET /health HTTP/1.1\r\n\r\n", b"GET /health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
                    b"GET /health HTTP/1.1\nHost: x\n\n"):
        body = raw_exchange(gw.port, request).split(b"\r\n\r\n", 1)[1]
        assert json.loads(body)["error"]["type"] == "invalid_request_error", body
    assert raw_exchange(gw.port, b"GET /health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n").startswith(b"HTTP/1.1 400")
    assert raw_exchange(gw.port, b"GET /health HTTP/1.1\nHost: x\n\n").startswith(b"HTTP/1.1 400")
    assert raw_exchange(gw.port, b"GET /health HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.1 200")


# Issue 21, item 1: a reload reaches connections the client keeps alive.
def test_a_revoked_key_is_refused_on_a_connection_opened_before_the_reload(mock, tmp_path):
    g = editor_gateway(mock, tmp_path)
    with g as gw:
        gw.admin_url = g.admin_url
        pooled = httpx.Client(base_url=gw.base_url, limits=httpx.Limits(max_connections=1),
                              headers={"authorization": f"Bearer {DEMO_KEY}"})
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
        assert pooled.post("/v1/chat/completions", json=body).status_code == 200
        Path(g.conf).write_text(Path(g.conf).read_text().replace(DEMO_KEY, "sk-attack-rotated-key"))
        r = admin(gw, "POST", "/admin/reload")
        assert r.status_code == 200, r.text
        assert pooled.post("/v1/chat/completions", json=body).status_code == 401
