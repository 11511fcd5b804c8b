"""Edge hygiene: CORS preflight and headers, personal-data redaction, header size limit."""

import httpx
import pytest

from conftest import DEMO_KEY, gateway_of


def config(mock):
    def make(port, metrics):
        return f"""
server: {{listen: ["127.0.0.1:{port}"], max_header_bytes: 8192}}
metrics: {{listen: "127.0.0.1:{metrics}"}}
cors: {{allow_origins: ["https://app.example"], max_age: 300}}
providers:
  - {{name: openai, kind: openai, base_url: "{mock.url("openai")}/v1", api_key: sk-mock-openai}}
models:
  open:
    targets: [{{provider: openai, model: gpt-4o-mini}}]
  private:
    targets: [{{provider: openai, model: gpt-4o-mini}}]
    redact_pii: true
keys: [{{name: all, key: {DEMO_KEY}}}]
"""
    return make


gw = gateway_of(config)


def chat(gw, model, content, headers=None):
    h = {"authorization": f"Bearer {DEMO_KEY}"}
    h.update(headers or {})
    return httpx.post(gw.base_url + "/v1/chat/completions", headers=h,
                      json={"model": model, "messages": [{"role": "user", "content": content}]})


def test_preflight_is_answered_by_the_gateway(gw):
    r = httpx.options(gw.base_url + "/v1/chat/completions", headers={
        "origin": "https://app.example", "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type"})
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == "https://app.example"
    assert "POST" in r.headers["access-control-allow-methods"]
    assert "authorization" in r.headers["access-control-allow-headers"]
    assert r.headers["access-control-max-age"] == "300"
    other = httpx.options(gw.base_url + "/v1/chat/completions", headers={
        "origin": "https://evil.example", "access-control-request-method": "POST"})
    assert "access-control-allow-origin" not in other.headers


def test_responses_and_errors_carry_cors_headers(gw):
    ok = chat(gw, "open", "hi", {"origin": "https://app.example"})
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "https://app.example"
    denied = httpx.post(gw.base_url + "/v1/chat/completions", headers={"origin": "https://app.example"}, json={})
    assert denied.status_code == 401 and denied.headers["access-control-allow-origin"] == "https://app.example"
    assert "access-control-allow-origin" not in chat(gw, "open", "hi", {"origin": "https://evil.example"}).headers


def test_personal_data_is_redacted_before_it_leaves(gw, mock):
    text = "Write to jane.doe@example.com or call +86 138-1234-5678; my ID is 11010119900307123X."
    r = chat(gw, "private", text)
    assert r.status_code == 200
    sent = " ".join(mock.last("openai")["texts"])
    for secret in ["jane.doe@example.com", "138-1234-5678", "11010119900307123X"]:
        assert secret not in sent
    assert "[REDACTED_EMAIL]" in sent and "[REDACTED_PHONE]" in sent and "[REDACTED_ID]" in sent
    chat(gw, "open", text)
    assert "jane.doe@example.com" in " ".join(mock.last("openai")["texts"]), "only routes that ask redact"


def test_oversized_headers_get_431(gw):
    r = chat(gw, "open", "hi", {"x-padding": "x" * 9000})
    assert r.status_code == 431
    assert r.json()["error"]["code"] == "headers_too_large"
