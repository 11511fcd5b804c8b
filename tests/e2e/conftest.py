"""Fixtures that run the real binaries: `modelmux mock` and `modelmux serve` on loopback.

Every test talks HTTP to these processes, as a user would. The binary comes from
MODELMUX_BIN, or target/debug/modelmux (the test script builds it first).
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import openai
import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("MODELMUX_BIN", ROOT / "target" / "debug" / "modelmux"))

DEMO_KEY = "sk-test-all-models"
LIMITED_KEY = "sk-test-only-mini"


# Ports this session has handed out: the OS may give a closed port again at once, and two
# listeners of one gateway on one port would share its socket.
_GIVEN = set()


def free_port_block(count):
    """A base port such that base+1..base+count are free right now. Blocks are picked below
    the ephemeral range: client connections (load tests make thousands) leave their ephemeral
    ports in TIME_WAIT, where no listener could bind them."""
    import random
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    for _ in range(500):
        base = random.randrange(10000, max(low - count - 1, 10001))
        ok = True
        for p in range(base + 1, base + count + 1):
            with socket.socket() as t:
                try:
                    t.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                    break
        if ok and _GIVEN.isdisjoint(range(base + 1, base + count + 1)):
            _GIVEN.update(range(base + 1, base + count + 1))
            return base
    raise RuntimeError("no free port block")


def free_port():
    """A port free right now that this session has not handed out before."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _GIVEN:
            _GIVEN.add(port)
            return port


def wait_http(url, timeout=20.0):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            r = httpx.get(url, timeout=1.0)
            if r.status_code < 500:
                return
        except Exception as e:  # not listening yet
            last = e
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up: {last}")


class Process:
    def __init__(self, args, name, env=None):
        self.log = tempfile.NamedTemporaryFile(prefix=f"modelmux-{name}-", suffix=".log", delete=False)
        self.proc = subprocess.Popen([str(BIN), *args], stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def output(self):
        return Path(self.log.name).read_text(errors="replace")


class Mock:
    """The mock vendors, plus their inspection endpoints."""

    VENDORS = ["openai", "anthropic", "dashscope", "qianfan", "gemini"]

    def __init__(self, base_port):
        self.base_port = base_port

    def url(self, vendor):
        return f"http://127.0.0.1:{self.base_port + 1 + self.VENDORS.index(vendor)}"

    def last(self, vendor="openai"):
        return httpx.get(self.url(vendor) + "/__mock/last").json()

    def stats(self, vendor="openai"):
        return httpx.get(self.url(vendor) + "/__mock/stats").json()

    def set_fault(self, vendor, fault, times=None):
        body = {"fault": fault}
        if times is not None:
            body["times"] = times
        httpx.post(self.url(vendor) + "/__mock/fault", json=body).raise_for_status()

    def reset(self, vendor):
        httpx.post(self.url(vendor) + "/__mock/reset").raise_for_status()

    def clear_fault(self, vendor):
        httpx.delete(self.url(vendor) + "/__mock/fault").raise_for_status()


def mock_providers(mock, *names):
    """YAML `providers:` entries, named after their vendor kind, for the mock vendors."""
    entries = {
        "openai": f'  - {{name: openai, kind: openai, base_url: "{mock.url("openai")}/v1", api_key: sk-mock-openai}}',
        "anthropic": f'  - {{name: anthropic, kind: anthropic, base_url: "{mock.url("anthropic")}", api_key: sk-ant-mock}}',
        "dashscope": f'  - {{name: dashscope, kind: dashscope, base_url: "{mock.url("dashscope")}", api_key: sk-mock-dashscope}}',
        "gemini": f'  - {{name: gemini, kind: gemini, base_url: "{mock.url("gemini")}/v1beta", api_key: mock-gemini-key}}',
        "qianfan": f'  - {{name: qianfan, kind: qianfan, api_version: v1, base_url: "{mock.url("qianfan")}", '
                   f'token_url: "{mock.url("qianfan")}/oauth/2.0/token", client_id: mock-qianfan-ak, '
                   f'client_secret: mock-qianfan-sk}}',
    }
    return "\n".join(entries[n] for n in names)


def gateway_config(mock, port, metrics_port, closed_port):
    o = mock.url("openai")
    return f"""
server:
  listen: ["127.0.0.1:{port}"]
  threads: 2
metrics:
  listen: "127.0.0.1:{metrics_port}"
providers:
  - name: openai-mock
    kind: openai
    base_url: {o}/v1
    api_key: ${{TEST_OPENAI_KEY:-sk-mock-openai}}
  - name: openai-impatient
    kind: openai
    base_url: {o}/v1
    api_key: sk-mock-openai
    timeouts: {{first_byte: 1s, idle: 1s}}
  - name: openai-wrong-key
    kind: openai
    base_url: {o}/v1
    api_key: sk-wrong-key-1234
  - name: nowhere
    kind: openai_compatible
    base_url: http://127.0.0.1:{closed_port}/v1
    timeouts: {{connect: 1s}}
  - name: dashscope-compatible
    kind: openai_compatible
    base_url: {mock.url("dashscope")}/compatible-mode/v1
    api_key: sk-mock-dashscope
  - name: qianfan-v2
    kind: qianfan
    api_version: v2
    base_url: {mock.url("qianfan")}/v2
    api_key: bce-v3/mock-qianfan
  - name: anthropic
    kind: anthropic
    base_url: {mock.url("anthropic")}
    api_key: sk-ant-mock
  - name: dashscope
    kind: dashscope
    base_url: {mock.url("dashscope")}
    api_key: sk-mock-dashscope
  - name: qianfan
    kind: qianfan
    base_url: {mock.url("qianfan")}
    token_url: {mock.url("qianfan")}/oauth/2.0/token
    client_id: mock-qianfan-ak
    client_secret: mock-qianfan-sk
  - name: gemini
    kind: gemini
    base_url: {mock.url("gemini")}/v1beta
    api_key: mock-gemini-key
models:
  claude:
    targets: [{{provider: anthropic, model: claude-sonnet-4-20250514}}]
    retry: {{attempts: 1}}
  qwen:
    targets: [{{provider: dashscope, model: qwen-plus}}]
    retry: {{attempts: 1}}
  ernie:
    targets: [{{provider: qianfan, model: completions_pro}}]
    retry: {{attempts: 1}}
  gemini:
    targets: [{{provider: gemini, model: gemini-2.5-flash}}]
    retry: {{attempts: 1}}
  gpt-4o-mini:
    targets: [{{provider: openai-mock, model: gpt-4o-mini-2024-07-18}}]
    retry: {{attempts: 1}}
  impatient:
    targets: [{{provider: openai-impatient, model: gpt-4o-mini}}]
    retry: {{attempts: 1}}
  misconfigured:
    targets: [{{provider: openai-wrong-key, model: gpt-4o-mini}}]
    retry: {{attempts: 1}}
  unreachable:
    targets: [{{provider: nowhere, model: llama}}]
    retry: {{attempts: 1}}
  qwen-plus:
    targets: [{{provider: dashscope-compatible, model: qwen-plus}}]
    retry: {{attempts: 1}}
  ernie-4.0-8k:
    targets: [{{provider: qianfan-v2, model: ernie-4.0-8k}}]
    retry: {{attempts: 1}}
# These tests provoke failures on purpose: keep every breaker closed (tests of breakers and
# failover start their own gateway).
breaker: {{consecutive_failures: 1000000, min_requests: 1000000}}
keys:
  - {{name: all, key: {DEMO_KEY}, models: ["*"]}}
  - {{name: limited, key: {LIMITED_KEY}, models: [gpt-4o-mini]}}
"""


@pytest.fixture(scope="session")
def mock():
    if not BIN.exists():
        pytest.exit(f"{BIN} is missing: build it with `cargo build` first", returncode=2)
    base = free_port_block(5)
    p = Process(["mock", "--base-port", str(base)], "mock")
    m = Mock(base)
    try:
        for v in Mock.VENDORS:
            wait_http(m.url(v) + "/__mock/stats")
        yield m
    finally:
        p.stop()


class Gateway:
    def __init__(self, port, metrics_port, process):
        self.port = port
        self.metrics_port = metrics_port
        self.process = process
        self.base_url = f"http://127.0.0.1:{port}"

    def client(self, key=DEMO_KEY, **kw):
        kw.setdefault("max_retries", 0)
        kw.setdefault("timeout", 30)
        return openai.OpenAI(base_url=self.base_url + "/v1", api_key=key, **kw)

    def post_raw(self, path, content, key=DEMO_KEY, headers=None):
        h = {"authorization": f"Bearer {key}", "content-type": "application/json"}
        h.update(headers or {})
        return httpx.post(self.base_url + path, content=content, headers=h, timeout=30)

    def metrics(self):
        return httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics").text

    def metric(self, name, **labels):
        """The value of one sample, or None."""
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in self.metrics().splitlines():
            if line.startswith(name + "{"):
                got = line[len(name) + 1:line.index("}")]
                if ",".join(sorted(got.split(","))) == want:
                    return float(line.rsplit(" ", 1)[1])
        return None


class running_gateway:
    """Starts `modelmux serve` with the config `make_config(port, metrics_port)` returns."""

    def __init__(self, make_config, env=None):
        self.port, self.metrics_port = free_port(), free_port()
        conf = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
        conf.write(make_config(self.port, self.metrics_port))
        conf.close()
        self.conf = conf.name
        self.env = env

    def __enter__(self):
        env = dict(os.environ, **(self.env or {}))
        self.process = Process(["serve", "-c", self.conf], "serve", env=env)
        wait_http(f"http://127.0.0.1:{self.port}/health")
        g = Gateway(self.port, self.metrics_port, self.process)
        g.conf = self.conf
        return g

    def __exit__(self, *exc):
        self.process.stop()


def gateway_of(config):
    """A module's own gateway: `modelmux serve` on `config(mock)`, for that module's tests."""
    @pytest.fixture(scope="module")
    def gw(mock):
        with running_gateway(config(mock)) as g:
            yield g
    return gw


@pytest.fixture(scope="session")
def gateway(mock):
    closed_port = free_port()
    with running_gateway(lambda port, metrics: gateway_config(mock, port, metrics, closed_port)) as g:
        yield g


def make_certificates():
    """A private CA and a server certificate for localhost and 127.0.0.1 signed by it, made
    with openssl in a new directory: (dir, ca.pem, server.pem, server.key)."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make the test certificates")
    d = Path(tempfile.mkdtemp(prefix="modelmux-tls-"))

    def run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-keyout", "ca.key",
        "-out", "ca.pem", "-subj", "/CN=modelmux test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=localhost")
    (d / "ext.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                               "extendedKeyUsage=serverAuth\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "2", "-out", "server.pem", "-extfile", "ext.cnf")
    return d, d / "ca.pem", d / "server.pem", d / "server.key"


def sse_events(text):
    """The data payloads of an SSE body, in order."""
    out = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        data = [line[5:].lstrip() for line in block.split("\n") if line.startswith("data:")]
        if data:
            payload = "\n".join(data)
            out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out
