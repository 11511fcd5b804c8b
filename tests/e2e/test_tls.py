"""Upstreams over HTTPS: certificates are verified (rustls), a private CA can be trusted per
provider, and an untrusted certificate is refused."""

import subprocess

import openai
import pytest

from conftest import DEMO_KEY, Mock, Process, free_port_block, make_certificates, running_gateway, wait_http

USER = [{"role": "user", "content": "Hello over TLS"}]


@pytest.fixture(scope="module")
def tls_mock():
    d, ca, cert, key = make_certificates()
    base = free_port_block(15)
    p = Process(["mock", "--base-port", str(base), "--tls-cert", str(cert), "--tls-key", str(key)], "mock-tls")
    m = Mock(base)
    wait_http(m.url("openai") + "/__mock/stats")
    yield base, ca
    p.stop()


def config(base, cert):
    https = f"https://localhost:{base + 11}/v1"

    def make(port, metrics):
        return f"""
server: {{listen: ["127.0.0.1:{port}"]}}
metrics: {{listen: "127.0.0.1:{metrics}"}}
providers:
  - {{name: trusted, kind: openai, base_url: "{https}", api_key: sk-mock-openai, ca_file: "{cert}"}}
  - {{name: untrusted, kind: openai, base_url: "{https}", api_key: sk-mock-openai}}
models:
  secure: {{targets: [{{provider: trusted, model: gpt-4o-mini}}], retry: {{attempts: 1}}}}
  insecure: {{targets: [{{provider: untrusted, model: gpt-4o-mini}}], retry: {{attempts: 1}}}}
keys: [{{name: all, key: {DEMO_KEY}}}]
"""
    return make


def test_https_upstream_with_a_trusted_ca(tls_mock):
    base, cert = tls_mock
    with running_gateway(config(base, cert)) as gw:
        r = gw.client().chat.completions.create(model="secure", messages=USER)
        assert r.choices[0].message.content == "Mock openai reply to: Hello over TLS"
        chunks = list(gw.client().chat.completions.create(model="secure", messages=USER, stream=True))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).endswith("over TLS")


def test_an_untrusted_certificate_is_refused(tls_mock):
    base, cert = tls_mock
    with running_gateway(config(base, cert)) as gw:
        with pytest.raises(openai.InternalServerError) as e:
            gw.client().chat.completions.create(model="insecure", messages=USER)
        assert e.value.status_code == 502
        assert e.value.body["code"] == "upstream_connect"


def test_a_bad_ca_file_is_a_config_problem(tmp_path):
    from conftest import BIN
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    conf = tmp_path / "c.yaml"
    conf.write_text(f"""
providers: [{{name: p, kind: openai_compatible, base_url: "https://x", ca_file: "{bad}"}}]
keys: [{{name: k, key: sk-12345678}}]
""")
    r = subprocess.run([str(BIN), "check", "-c", str(conf)], capture_output=True, text=True)
    assert r.returncode == 1 and "providers[0].ca_file" in r.stderr, r.stderr
