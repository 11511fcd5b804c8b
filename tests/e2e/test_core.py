"""The core gateway, driven with the official `openai` SDK against real processes."""

import hashlib
import os
import pathlib
import random
import subprocess
import tempfile
import time

import httpx
import openai
import pytest

from conftest import BIN, LIMITED_KEY, sse_events

USER = [{"role": "user", "content": "Hello there, gateway"}]


# --- models -------------------------------------------------------------------------------

def test_models_list_shows_what_the_key_may_use(gateway):
    ids = sorted(m.id for m in gateway.client().models.list())
    assert ids == ["claude", "ernie", "ernie-4.0-8k", "gemini", "gpt-4o-mini", "impatient", "misconfigured",
                   "qwen", "qwen-plus", "unreachable"]
    limited = [m.id for m in gateway.client(LIMITED_KEY).models.list()]
    assert limited == ["gpt-4o-mini"]
    owners = {m.id: m.owned_by for m in gateway.client().models.list()}
    assert owners["gpt-4o-mini"] == "openai"
    assert owners["ernie-4.0-8k"] == "qianfan"
    assert (owners["claude"], owners["qwen"], owners["gemini"]) == ("anthropic", "dashscope", "gemini")


def test_model_retrieve(gateway):
    m = gateway.client().models.retrieve("gpt-4o-mini")
    assert (m.id, m.object) == ("gpt-4o-mini", "model")
    with pytest.raises(openai.NotFoundError):
        gateway.client().models.retrieve("no-such-model")
    with pytest.raises(openai.PermissionDeniedError):
        gateway.client(LIMITED_KEY).models.retrieve("qwen-plus")


# --- chat ---------------------------------------------------------------------------------

def test_chat_non_streaming(gateway, mock):
    r = gateway.client().chat.completions.create(model="gpt-4o-mini", messages=USER, temperature=0.2)
    assert r.choices[0].message.content == "Mock openai reply to: Hello there, gateway"
    assert r.choices[0].finish_reason == "stop"
    assert r.model == "gpt-4o-mini", "the client sees the public name, not the vendor's"
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (3, 7, 10)
    seen = mock.last("openai")
    assert seen["model"] == "gpt-4o-mini-2024-07-18", "the body's model is rewritten for the vendor"
    assert seen["headers"]["authorization"] == "Bearer sk-mock-openai", "the client's key is replaced"


def test_chat_streaming_with_usage(gateway):
    stream = gateway.client().chat.completions.create(
        model="gpt-4o-mini", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Mock openai reply to: Hello there, gateway"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].usage.completion_tokens == 7
    assert all(c.model == "gpt-4o-mini" for c in chunks)


def test_openai_compatible_vendors(gateway):
    for model, vendor in [("qwen-plus", "dashscope"), ("ernie-4.0-8k", "qianfan")]:
        r = gateway.client().chat.completions.create(model=model, messages=USER)
        assert r.choices[0].message.content == f"Mock {vendor} reply to: Hello there, gateway"
        text = "".join(
            c.choices[0].delta.content or ""
            for c in gateway.client().chat.completions.create(model=model, messages=USER, stream=True)
            if c.choices
        )
        assert text == r.choices[0].message.content


def test_stream_chunks_arrive_as_the_vendor_sends_them(gateway):
    """Time-spaced chunks must not be delivered all at once: nothing is buffered whole."""
    messages = [{"role": "user", "content": "go [[mock words=5 chunk_delay_ms=300]]"}]
    arrivals = []
    start = time.monotonic()
    for c in gateway.client().chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True):
        if c.choices and c.choices[0].delta.content:
            arrivals.append(time.monotonic() - start)
    assert len(arrivals) == 5
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
    # The mock waits 300 ms between events; each content chunk must arrive on its own.
    assert all(g > 0.15 for g in gaps), gaps


def test_tool_call_passes_through(gateway):
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    r = gateway.client().chat.completions.create(model="gpt-4o-mini", messages=USER, tools=tools)
    call = r.choices[0].message.tool_calls[0]
    assert (call.function.name, call.function.arguments) == ("get_weather", '{"city":"example"}')
    assert r.choices[0].finish_reason == "tool_calls"


# --- large bodies ---------------------------------------------------------------------------

@pytest.mark.parametrize("size", [1 << 20, 8 << 20])
def test_large_bodies_arrive_intact(gateway, mock, size):
    rng = random.Random(size)
    content = "".join(rng.choice("abcdefghij klmnop") for _ in range(size))
    r = gateway.client(timeout=120).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": content}]
    )
    assert r.choices[0].message.content.startswith("Mock openai reply to:")
    seen = mock.last("openai")
    assert seen["last_user_bytes"] == len(content.encode())
    assert seen["last_user_sha256"] == hashlib.sha256(content.encode()).hexdigest()


# --- client errors ----------------------------------------------------------------------------

def error_body(resp):
    body = resp.json()
    assert set(body) == {"error"}
    assert {"message", "type", "param", "code"} <= set(body["error"])
    return body["error"]


def test_bad_or_missing_key(gateway):
    with pytest.raises(openai.AuthenticationError) as e:
        gateway.client("sk-wrong-key").chat.completions.create(model="gpt-4o-mini", messages=USER)
    assert e.value.status_code == 401
    r = httpx.post(gateway.base_url + "/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": USER})
    assert r.status_code == 401 and error_body(r)["code"] == "missing_api_key"


def test_model_not_allowed_for_key(gateway):
    with pytest.raises(openai.PermissionDeniedError) as e:
        gateway.client(LIMITED_KEY).chat.completions.create(model="qwen-plus", messages=USER)
    assert e.value.status_code == 403


def test_unknown_model_and_path(gateway):
    with pytest.raises(openai.NotFoundError) as e:
        gateway.client().chat.completions.create(model="gpt-17", messages=USER)
    assert e.value.body["code"] == "model_not_found"
    r = httpx.get(gateway.base_url + "/v1/nothing-here", headers={"authorization": "Bearer x"})
    assert r.status_code == 404 and error_body(r)["type"] == "invalid_request_error"
    r = httpx.get(gateway.base_url + "/v1/chat/completions")
    assert r.status_code == 405 and error_body(r)


@pytest.mark.parametrize(
    "body, param",
    [
        (b"{not json", None),
        (b"[1, 2, 3]", None),
        (b'{"model": "gpt-4o-mini"}', "messages"),
        (b'{"model": "gpt-4o-mini", "messages": "hi"}', "messages"),
        (b'{"messages": [{"role": "user", "content": "x"}]}', "model"),
        (b'{"model": 42, "messages": [{"role": "user", "content": "x"}]}', "model"),
        (b'{"model": "gpt-4o-mini", "messages": [{"role": "user"}], "temperature": "hot"}', "temperature"),
        (b'{"model": "gpt-4o-mini", "messages": [{"role": "user"}], "max_tokens": 2.5}', "max_tokens"),
        (b'{"model": "gpt-4o-mini", "messages": [{"role": "wizard"}]}', "messages[0].role"),
        (b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "\xff\xfe"}]}', None),
        (b"", None),
    ],
)
def test_malformed_requests_get_400(gateway, body, param):
    r = gateway.post_raw("/v1/chat/completions", body)
    assert r.status_code == 400, r.text
    err = error_body(r)
    assert err["type"] == "invalid_request_error"
    assert err["param"] == param


def test_wrong_types_through_the_sdk(gateway):
    with pytest.raises(openai.BadRequestError) as e:
        gateway.client().chat.completions.create(model="gpt-4o-mini", messages=USER, temperature="hot")
    assert e.value.body["param"] == "temperature"
    with pytest.raises(openai.BadRequestError):
        gateway.client().chat.completions.create(model="gpt-4o-mini", messages=[])


def test_body_over_the_limit_gets_413(gateway):
    content = "x" * (17 << 20)
    with pytest.raises(openai.APIStatusError) as e:
        gateway.client(timeout=120).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": content}]
        )
    assert e.value.status_code == 413
    assert e.value.body["code"] == "request_too_large"


def test_arbitrary_bytes_never_break_the_gateway(gateway):
    rng = random.Random(7)
    for i in range(60):
        body = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400)))
        if i % 3 == 0:
            body = b'{"model":"gpt-4o-mini","messages":[' + body
        r = gateway.post_raw("/v1/chat/completions", body)
        assert r.status_code in (400, 404), (r.status_code, r.text)
        error_body(r)
    assert httpx.get(gateway.base_url + "/health").status_code == 200


# --- upstream errors ------------------------------------------------------------------------

def test_upstream_unreachable_is_502(gateway):
    with pytest.raises(openai.InternalServerError) as e:
        gateway.client().chat.completions.create(model="unreachable", messages=USER)
    assert e.value.status_code == 502
    assert e.value.body["code"] == "upstream_connect"


def test_upstream_garbage_is_502(gateway):
    messages = [{"role": "user", "content": "hi [[mock garbage]]"}]
    with pytest.raises(openai.InternalServerError) as e:
        gateway.client().chat.completions.create(model="gpt-4o-mini", messages=messages)
    assert e.value.status_code == 502
    assert e.value.body["code"] == "upstream_bad_response"


def test_upstream_timeout_is_504(gateway):
    messages = [{"role": "user", "content": "hi [[mock latency_ms=2500]]"}]
    start = time.monotonic()
    with pytest.raises(openai.InternalServerError) as e:
        gateway.client().chat.completions.create(model="impatient", messages=messages)
    assert e.value.status_code == 504
    assert time.monotonic() - start < 2.4, "the first-byte timeout (1 s) cut the wait short"


def test_upstream_hang_is_504(gateway):
    messages = [{"role": "user", "content": "hi [[mock hang]]"}]
    with pytest.raises(openai.InternalServerError) as e:
        gateway.client().chat.completions.create(model="impatient", messages=messages)
    assert e.value.status_code == 504


def test_the_idle_timeout_is_per_gap_not_per_stream(gateway):
    """The idle timeout (1 s here) bounds each wait between chunks, however long the stream;
    a gap longer than it ends the stream with an error event."""
    slow = [{"role": "user", "content": "go [[mock words=10 chunk_delay_ms=300]]"}]
    start = time.monotonic()
    stream = gateway.client().chat.completions.create(model="impatient", messages=slow, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert time.monotonic() - start > 2, "the stream outlasted the idle timeout"
    assert len(text.split()) == 10

    stalled = [{"role": "user", "content": "go [[mock words=3 chunk_delay_ms=1600]]"}]
    stream = gateway.client().chat.completions.create(model="impatient", messages=stalled, stream=True)
    with pytest.raises(openai.APIError) as e:
        for _ in stream:
            pass
    assert "did not respond in time" in str(e.value)


def test_vendor_rate_limit_passes_retry_after(gateway):
    messages = [{"role": "user", "content": "hi [[mock status=429 retry_after=7]]"}]
    with pytest.raises(openai.RateLimitError) as e:
        gateway.client().chat.completions.create(model="gpt-4o-mini", messages=messages)
    assert e.value.response.headers["retry-after"] == "7"


def test_vendor_server_errors(gateway):
    for status, expected in [(500, 502), (503, 503)]:
        messages = [{"role": "user", "content": f"hi [[mock status={status}]]"}]
        with pytest.raises(openai.InternalServerError) as e:
            gateway.client().chat.completions.create(model="gpt-4o-mini", messages=messages)
        assert e.value.status_code == expected
    messages = [{"role": "user", "content": "hi [[mock status=400]]"}]
    with pytest.raises(openai.BadRequestError):
        gateway.client().chat.completions.create(model="gpt-4o-mini", messages=messages)


def test_vendor_rejecting_gateway_credentials_is_not_the_clients_401(gateway):
    with pytest.raises(openai.InternalServerError) as e:
        gateway.client().chat.completions.create(model="misconfigured", messages=USER)
    assert e.value.status_code == 502
    assert "sk-wrong-key-1234" not in e.value.response.text


@pytest.mark.parametrize("fault", ["reset_after=3", "malformed_after=2", "error_after=2"])
def test_stream_failing_midway_raises_in_the_sdk(gateway, fault):
    messages = [{"role": "user", "content": f"go [[mock words=6 {fault}]]"}]
    received = []
    with pytest.raises(openai.APIError):
        for c in gateway.client().chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True):
            if c.choices:
                received.append(c.choices[0].delta.content)
    assert received, "the chunks before the failure were delivered"


def test_truncated_stream_ends_with_error_and_done(gateway):
    r = gateway.post_raw(
        "/v1/chat/completions",
        b'{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"x [[mock reset_after=2]]"}]}',
    )
    events = sse_events(r.text)
    assert events[-1] == "[DONE]"
    assert "error" in events[-2]


# --- operations -----------------------------------------------------------------------------

def test_health_and_metrics(gateway):
    assert httpx.get(gateway.base_url + "/health").json() == {"status": "ok"}
    gateway.client().chat.completions.create(model="gpt-4o-mini", messages=USER)
    text = gateway.metrics()
    assert 'modelmux_requests_total{model="gpt-4o-mini",provider="openai-mock",status="200",target="openai-mock/gpt-4o-mini-2024-07-18"}' in text
    assert "modelmux_request_duration_seconds_bucket" in text
    assert 'modelmux_upstream_errors_total{kind="upstream_connect",provider="nowhere"}' in text
    assert 'modelmux_tokens_total{model="gpt-4o-mini",provider="openai-mock",target="openai-mock/gpt-4o-mini-2024-07-18",type="prompt"}' in text
    assert "sk-mock-openai" not in text and "sk-test" not in text


def test_check_names_the_broken_fields():
    bad = """
providers:
  - {name: a, kind: openia, base_url: "http://x"}
  - {name: b, kind: anthropic, base_url: "not a url"}
models:
  m: {targets: [{provider: ghost, model: x}]}
keys: [{name: k, key: sk-12345678, models: [m]}]
"""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(bad)
    r = subprocess.run([str(BIN), "check", "-c", f.name], capture_output=True, text=True)
    assert r.returncode == 1
    for expected in ["providers[0].kind", "providers[1].base_url", "providers[1].api_key",
                     "models.m.targets[0].provider"]:
        assert expected in r.stderr, r.stderr
    ok = subprocess.run([str(BIN), "check", "-c", "conf/modelmux.yaml"], capture_output=True, text=True,
                        cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert ok.returncode == 0, ok.stderr


def test_shipped_configs_hold_no_literal_vendor_credentials():
    root = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
    conf = pathlib.Path(root, "conf")
    for path in conf.rglob("*.yaml"):
        name = str(path.relative_to(conf))
        text = path.read_text()
        for line in text.splitlines():
            field, _, value = line.strip().lstrip("- ").partition(":")
            if field in ("api_key", "client_id", "client_secret", "key_id", "secret"):
                # The offline config writes out the mocks' own keys, so that a developer's
                # real key in the environment never reaches a mock.
                mock_key = name == "modelmux.yaml" and "mock" in value
                assert "${" in line or mock_key, f"{name}: {line.strip()}"


def test_broken_chunked_framing_gets_a_json_400(gateway):
    import json
    import socket
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer sk-test-all-models\r\n"
                  b"transfer-encoding: chunked\r\ncontent-type: application/json\r\n\r\nZZZ\r\nnot hex\r\n0\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < 10:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), head
    assert json.loads(body)["error"]["type"] == "invalid_request_error"
