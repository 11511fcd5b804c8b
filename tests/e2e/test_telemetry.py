"""OpenTelemetry traces: a span per request and one per vendor attempt, by the GenAI semantic
conventions, exported over OTLP/HTTP and OTLP/gRPC to a receiver built on the OpenTelemetry
project's protobufs; the client's W3C trace context continued and passed to the vendor; a
collector that is down or slow costs requests nothing."""

import time

import anthropic
import httpx
import pytest

from conftest import DEMO_KEY, free_port, mock_providers, running_gateway, sse_events
from otlp_receiver import GrpcReceiver, HttpReceiver

USER = [{"role": "user", "content": "Hello there"}]
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"


def config(mock, endpoint, protocol, extra=""):
    def make(port, metrics):
        return f"""
server: {{listen: ["127.0.0.1:{port}"], threads: 2}}
metrics: {{listen: "127.0.0.1:{metrics}"}}
telemetry:
  otlp:
    endpoint: {endpoint}
    protocol: {protocol}
    headers: {{x-collector-key: sk-collector-secret}}
    service_name: modelmux-test
    timeout: 1s
{extra}
providers:
{mock_providers(mock, "openai", "anthropic")}
  - {{name: flaky, kind: openai, base_url: "{mock.url("openai")}/v1", api_key: wrong-key}}
models:
  gpt-4o-mini:
    targets: [{{provider: openai, model: gpt-4o-mini}}]
  claude:
    targets: [{{provider: anthropic, model: claude-sonnet-4-20250514}}]
  failover:
    targets:
      - {{provider: flaky, model: gpt-4o-mini, priority: 0}}
      - {{provider: anthropic, model: claude-sonnet-4-20250514, priority: 1}}
keys: [{{name: all, key: {DEMO_KEY}}}]
"""
    return make


@pytest.fixture(scope="module", params=["http/protobuf", "grpc"])
def traced(request, mock):
    port = free_port()
    if request.param == "grpc":
        receiver, endpoint = GrpcReceiver(port), f"http://127.0.0.1:{port}"
    else:
        receiver, endpoint = HttpReceiver(port), f"http://127.0.0.1:{port}"
    extra = "    capture_content: true"
    with running_gateway(config(mock, endpoint, request.param, extra)) as g:
        g.receiver = receiver
        yield g
    receiver.stop()


def by_trace(spans, trace_id):
    return [s for s in spans if s["trace_id"] == trace_id]


def test_a_request_and_its_attempts_arrive_as_a_trace(traced):
    r = httpx.post(traced.base_url + "/v1/chat/completions",
                   headers={"authorization": f"Bearer {DEMO_KEY}",
                            "traceparent": f"00-{TRACE}-{CLIENT_SPAN}-01", "tracestate": "vendor=abc"},
                   json={"model": "gpt-4o-mini", "messages": USER}, timeout=30)
    assert r.status_code == 200
    reply = r.json()
    spans = traced.receiver.wait_for(lambda s: len(by_trace(s, TRACE)) >= 2)
    server = next(s for s in by_trace(spans, TRACE) if s["kind"] == "SPAN_KIND_SERVER")
    client = next(s for s in by_trace(spans, TRACE) if s["kind"] == "SPAN_KIND_CLIENT")
    # The client's trace is continued: its span is the request span's parent.
    assert server["parent_span_id"] == CLIENT_SPAN
    assert client["parent_span_id"] == server["span_id"]
    assert server["trace_state"] == "vendor=abc"
    assert server["service"] == "modelmux-test" and server["scope"] == "modelmux"
    assert server["name"] == "chat gpt-4o-mini"
    a = server["attributes"]
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.request.model"] == "gpt-4o-mini"
    assert a["gen_ai.response.model"]
    assert a["gen_ai.response.id"] == reply["id"]
    assert a["gen_ai.response.finish_reasons"] == [reply["choices"][0]["finish_reason"]]
    assert a["gen_ai.usage.input_tokens"] == reply["usage"]["prompt_tokens"]
    assert a["gen_ai.usage.output_tokens"] == reply["usage"]["completion_tokens"]
    assert a["modelmux.key"] == "all" and a["modelmux.target"] == "openai/gpt-4o-mini"
    assert a["server.address"] == "127.0.0.1" and a["http.response.status_code"] == 200
    # capture_content is on in this gateway: the prompt and the reply are in the span.
    assert "Hello there" in a["gen_ai.input.messages"]
    assert a["gen_ai.output.messages"] == reply["choices"][0]["message"]["content"]
    c = client["attributes"]
    assert client["name"] == "chat gpt-4o-mini" and c["gen_ai.provider.name"] == "openai"
    assert c["server.address"] == "127.0.0.1" and c["modelmux.outcome"] == "ok"
    assert server["start"] <= client["start"] <= client["end"] <= server["end"]
    # The collector's key went with the export, and never into a span.
    assert all("sk-collector-secret" not in str(s) for s in spans)


def test_the_vendor_request_carries_the_attempts_span(traced, mock):
    trace = "0af7651916cd43dd8448eb211c80319c"
    c = traced.client(default_headers={"traceparent": f"00-{trace}-b7ad6b7169203331-01"})
    c.chat.completions.create(model="gpt-4o-mini", messages=USER)
    headers = {k.lower(): v for k, v in mock.last("openai")["headers"].items()}
    spans = traced.receiver.wait_for(lambda s: len(by_trace(s, trace)) >= 2)
    client = next(s for s in by_trace(spans, trace) if s["kind"] == "SPAN_KIND_CLIENT")
    assert headers["traceparent"] == f"00-{trace}-{client['span_id']}-01"


def test_failover_shows_each_attempt_and_a_stream_its_finish(traced):
    trace = "5b8aa5a2d2c872e8321cf37308d69df2"
    client = anthropic.Anthropic(base_url=traced.base_url, api_key=DEMO_KEY, max_retries=0,
                                 default_headers={"traceparent": f"00-{trace}-051581bf3cb55c13-01"})
    with client.messages.stream(model="failover", max_tokens=64, messages=USER) as stream:
        final = stream.get_final_message()
    spans = traced.receiver.wait_for(lambda s: len(by_trace(s, trace)) >= 3)
    server = next(s for s in by_trace(spans, trace) if s["kind"] == "SPAN_KIND_SERVER")
    attempts = sorted((s for s in by_trace(spans, trace) if s["kind"] == "SPAN_KIND_CLIENT"),
                      key=lambda s: s["start"])
    assert [s["attributes"]["modelmux.provider"] for s in attempts] == ["flaky", "anthropic"]
    assert attempts[0]["status"] == "STATUS_CODE_ERROR" and attempts[0]["attributes"]["error.type"]
    assert attempts[0]["attributes"]["error.type"] == attempts[0]["attributes"]["modelmux.outcome"]
    assert attempts[1]["attributes"]["gen_ai.provider.name"] == "anthropic"
    assert all(s["parent_span_id"] == server["span_id"] for s in attempts)
    a = server["attributes"]
    assert a["gen_ai.response.id"] == final.id
    assert a["gen_ai.response.finish_reasons"] == [final.stop_reason]
    assert a["gen_ai.usage.output_tokens"] == final.usage.output_tokens
    assert a["modelmux.time_to_first_token_ms"] > 0
    assert server["status"] != "STATUS_CODE_ERROR"


def test_a_trace_started_here_is_sampled_and_new(traced):
    r = httpx.post(traced.base_url + "/v1/chat/completions", headers={"authorization": f"Bearer {DEMO_KEY}"},
                   json={"model": "claude", "messages": USER}, timeout=30)
    assert r.status_code == 200
    request_id = r.headers["x-request-id"]
    spans = traced.receiver.wait_for(
        lambda s: any(x["attributes"].get("modelmux.request_id") == request_id for x in s))
    server = next(x for x in spans if x["attributes"].get("modelmux.request_id") == request_id)
    assert server["parent_span_id"] == "" and len(server["trace_id"]) == 32
    assert server["attributes"]["gen_ai.provider.name"] == "anthropic"


def test_the_collectors_headers_are_sent(traced):
    traced.receiver.wait_for(lambda s: len(s) > 0)
    assert any(r["headers"].get("x-collector-key") == "sk-collector-secret" for r in traced.receiver.requests)


def test_a_client_that_asks_not_to_be_sampled_is_not(mock):
    port = free_port()
    receiver = HttpReceiver(port)
    try:
        make = config(mock, f"http://127.0.0.1:{port}", "http/protobuf", "    sample_ratio: 0")
        with running_gateway(make) as g:
            c = g.client(default_headers={"traceparent": f"00-{TRACE}-{CLIENT_SPAN}-00"})
            c.chat.completions.create(model="gpt-4o-mini", messages=USER)
            headers = {k.lower(): v for k, v in mock.last("openai")["headers"].items()}
            # Not sampled, but still one trace: the vendor hears of it.
            assert headers["traceparent"].startswith(f"00-{TRACE}-") and headers["traceparent"].endswith("-00")
            g.client().chat.completions.create(model="gpt-4o-mini", messages=USER)  # ratio 0
            sampled = g.client(default_headers={"traceparent": f"00-{'1' * 32}-{CLIENT_SPAN}-01"})
            sampled.chat.completions.create(model="gpt-4o-mini", messages=USER)
            spans = receiver.wait_for(lambda s: len(s) >= 2)
            time.sleep(0.5)
            assert {s["trace_id"] for s in receiver.spans} == {"1" * 32}
    finally:
        receiver.stop()


@pytest.mark.parametrize("collector", ["down", "slow"])
def test_a_collector_down_or_slow_costs_requests_nothing(mock, collector):
    port = free_port()
    receiver = HttpReceiver(port) if collector == "slow" else None
    if receiver:
        receiver.delay = 5.0  # beyond the exporter's 1 s timeout
    try:
        with running_gateway(config(mock, f"http://127.0.0.1:{port}", "http/protobuf")) as g:
            c = g.client()
            took = []
            for _ in range(30):
                start = time.monotonic()
                c.chat.completions.create(model="gpt-4o-mini", messages=USER)
                took.append(time.monotonic() - start)
            # Streams too: nothing waits for the collector.
            with httpx.stream("POST", g.base_url + "/v1/chat/completions",
                              headers={"authorization": f"Bearer {DEMO_KEY}"},
                              json={"model": "gpt-4o-mini", "stream": True, "messages": USER}) as r:
                assert sse_events(r.read().decode())[-1] == "[DONE]"
            assert max(took) < 1.0, took
            deadline = time.time() + 10
            while time.time() < deadline and not g.metric("modelmux_trace_spans_total", outcome="export_failed"):
                time.sleep(0.2)
            assert g.metric("modelmux_trace_spans_total", outcome="export_failed") > 0
            assert "sk-collector-secret" not in g.process.output()
    finally:
        if receiver:
            receiver.stop()
