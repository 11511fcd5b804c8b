"""Prompt apps, the unified request and workflows over HTTP: app versions and labels, a missing
variable, `app/<name>` and `workflow/<name>` as models, the unified request for every type by
provider name, a condition taking each branch, and a failing vendor shown on its node's event."""

import json
import pathlib
import tempfile
import textwrap

import httpx
import openai
import pytest

from conftest import DEMO_KEY, mock_providers, running_gateway, sse_events


def config(mock, root):
    (root / "apps").mkdir()
    (root / "workflows").mkdir()
    (root / "apps" / "greet.yaml").write_text(textwrap.dedent("""
        name: greet
        labels: {production: 1, staging: 2}
        versions:
          - {version: 1, model: gpt-4o-mini, system: "You greet.", user: "Greet {{who}} in {{lang}}", params: {max_tokens: 50}}
          - {version: 2, model: qwen-plus, user: "Say hi to {{who}}"}
    """))
    (root / "workflows" / "triage.yaml").write_text(textwrap.dedent("""
        name: triage
        inputs: {text: string}
        nodes:
          - {id: check, type: condition, value: "{{inputs.text}}", op: contains, text: urgent}
          - {id: page, type: llm, model: gpt-4o-mini, prompt: "Page someone: {{inputs.text}}"}
          - {id: file, type: template, template: "Filed: {{inputs.text}}"}
          - {id: done, type: merge}
        edges:
          - {from: check, to: page, when: true}
          - {from: check, to: file, when: false}
          - {from: page, to: done}
          - {from: file, to: done}
    """))
    (root / "workflows" / "flaky.yaml").write_text(textwrap.dedent("""
        name: flaky
        inputs: {text: string}
        nodes:
          - {id: ask, type: llm, model: claude, prompt: "{{inputs.text}}"}
          - {id: out, type: output, value: "{{ask.output}}"}
        edges: [{from: ask, to: out}]
    """))
    (root / "workflows" / "fetch.yaml").write_text(textwrap.dedent(f"""
        name: fetch
        nodes:
          - {{id: models, type: http, url: "{mock.url("openai")}/v1/models", method: GET}}
        edges: []
    """))

    def make(port, metrics):
        allow = mock.url("openai").removeprefix("http://")
        return f"""
server: {{listen: ["127.0.0.1:{port}"]}}
metrics: {{listen: "127.0.0.1:{metrics}"}}
providers:
{mock_providers(mock, "openai", "dashscope", "qianfan", "anthropic")}
models:
  gpt-4o-mini: {{targets: [{{provider: openai, model: gpt-4o-mini}}]}}
  qwen-plus: {{targets: [{{provider: dashscope, model: qwen-plus}}]}}
  claude: {{targets: [{{provider: anthropic, model: claude-x}}], retry: {{attempts: 1}}}}
  dall-e-3: {{targets: [{{provider: openai, model: dall-e-3}}]}}
  wanx: {{targets: [{{provider: dashscope, model: wanx2.1-t2i-turbo}}]}}
  sd_xl: {{targets: [{{provider: qianfan, model: sd_xl}}]}}
  text-embedding-3-small: {{targets: [{{provider: openai, model: text-embedding-3-small}}]}}
  text-embedding-v3: {{targets: [{{provider: dashscope, model: text-embedding-v3}}]}}
  embedding-v1: {{targets: [{{provider: qianfan, model: embedding-v1}}]}}
apps: {{dir: "{root / "apps"}"}}
workflows: {{dir: "{root / "workflows"}", http_allow: ["{allow}"]}}
unified:
  text_generation: {{openai: gpt-4o-mini, ali: qwen-plus, default: gpt-4o-mini}}
  image_generation: {{openai: dall-e-3, ali: wanx, baidu: sd_xl}}
  embedding: {{openai: text-embedding-3-small, ali: text-embedding-v3, baidu: embedding-v1}}
keys: [{{name: all, key: {DEMO_KEY}}}]
"""
    return make


@pytest.fixture(scope="module")
def gw(mock):
    with tempfile.TemporaryDirectory() as d:
        with running_gateway(config(mock, pathlib.Path(d))) as g:
            yield g


def post(gw, path, body):
    return httpx.post(gw.base_url + path, json=body, headers={"authorization": f"Bearer {DEMO_KEY}"}, timeout=30)


def test_app_versions_labels_and_a_missing_variable(gw):
    r = post(gw, "/v1/apps/greet/completions", {"variables": {"who": "Ana", "lang": "Welsh"}})
    assert r.status_code == 200
    assert r.json()["model"] == "gpt-4o-mini"  # production is version 1
    assert "Greet Ana in Welsh" in r.json()["choices"][0]["message"]["content"]
    staging = post(gw, "/v1/apps/greet/completions", {"variables": {"who": "Ana"}, "label": "staging"})
    assert staging.json()["model"] == "qwen-plus" and "Say hi to Ana" in staging.text
    v2 = post(gw, "/v1/apps/greet/completions", {"variables": {"who": "Bo"}, "version": 2})
    assert "Say hi to Bo" in v2.text
    missing = post(gw, "/v1/apps/greet/completions", {"variables": {"who": "Ana"}})
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "variables.lang"
    assert post(gw, "/v1/apps/greet/completions", {"variables": {}, "version": 9}).status_code == 400
    assert post(gw, "/v1/apps/nope/completions", {}).status_code == 404


def test_apps_stream_and_answer_as_models(gw):
    client = gw.client()
    chunks = list(client.chat.completions.create(model="app/greet", messages=[{"role": "user", "content": "Cy"}],
                                                 stream=True, extra_body={"label": "staging"}))
    assert "Say hi to Cy" in "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    r = post(gw, "/v1/apps/greet/completions", {"variables": {"who": "Di", "lang": "Basque"}, "stream": True})
    assert sse_events(r.text)[-1] == "[DONE]"


@pytest.mark.parametrize("provider,model", [("openai", "gpt-4o-mini"), ("ali", "qwen-plus")])
def test_unified_text_by_provider_name(gw, provider, model):
    r = post(gw, "/v1/unified", {"model_type": "text_generation", "provider": provider,
                                 "params": {"prompt": "Hello {{name}}", "variables": {"name": "Ed"}, "max_tokens": 30}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == model and body["provider"] == provider
    assert "Hello Ed" in body["output"] and body["usage"]["total_tokens"] > 0


@pytest.mark.parametrize("provider", ["openai", "ali", "baidu"])
def test_unified_images_and_embeddings_by_provider_name(gw, provider):
    img = post(gw, "/v1/unified", {"model_type": "image_generation", "provider": provider,
                                   "params": {"prompt": "a cat", "size": "1024x1024"}})
    assert img.status_code == 200, img.text
    assert img.json()["output"][0].get("url") or img.json()["output"][0].get("b64_json")
    emb = post(gw, "/v1/unified", {"model_type": "embedding", "provider": provider, "params": {"input": ["a", "b"]}})
    assert emb.status_code == 200, emb.text
    assert len(emb.json()["output"]) == 2 and all(isinstance(x, float) for x in emb.json()["output"][0])


def test_unified_refuses_what_it_cannot_route(gw):
    r = post(gw, "/v1/unified", {"model_type": "text_generation", "provider": "baidu", "params": {"prompt": "x"}})
    assert r.status_code == 400 and r.json()["error"]["param"] == "provider" and "openai" in r.json()["error"]["message"]
    r = post(gw, "/v1/unified", {"model_type": "video", "params": {"prompt": "x"}})
    assert r.status_code == 400 and r.json()["error"]["param"] == "model_type"
    r = post(gw, "/v1/unified", {"model_type": "text_generation", "params": {"prompt": "{{who}}"}})
    assert r.status_code == 400 and r.json()["error"]["param"] == "params.variables.who"


def events_of(r):
    return [e for e in sse_events(r.text) if e != "[DONE]"]


def test_a_condition_takes_each_branch(gw):
    urgent = post(gw, "/v1/workflows/triage/run", {"inputs": {"text": "urgent: disk full"}}).json()
    assert "Page someone" in urgent["outputs"]["done"]
    ran = {e["node"]: e["event"] for e in urgent["events"] if "node" in e}
    assert ran["page"] == "node_finished" and ran["file"] == "node_skipped"
    calm = post(gw, "/v1/workflows/triage/run", {"inputs": {"text": "a typo"}}).json()
    assert calm["outputs"]["done"] == "Filed: a typo"
    ran = {e["node"]: e["event"] for e in calm["events"] if "node" in e}
    assert ran["page"] == "node_skipped" and ran["file"] == "node_finished"


def test_a_streamed_run_sends_per_node_events_then_the_outputs(gw):
    r = post(gw, "/v1/workflows/triage/run", {"inputs": {"text": "urgent!"}, "stream": True})
    events = events_of(r)
    finished = [e for e in events if e["event"] == "node_finished"]
    llm = next(e for e in finished if e["node"] == "page")
    assert llm["usage"]["total_tokens"] > 0 and llm["latency_ms"] >= 0
    assert events[-1]["event"] == "outputs" and "done" in events[-1]["outputs"]
    assert sse_events(r.text)[-1] == "[DONE]"


def test_a_failing_vendor_shows_on_its_nodes_event(gw, mock):
    mock.set_fault("anthropic", "status=500")
    try:
        r = post(gw, "/v1/workflows/flaky/run", {"inputs": {"text": "hi"}, "stream": True})
    finally:
        mock.clear_fault("anthropic")
    events = events_of(r)
    failed = [e for e in events if e["event"] == "node_failed"]
    assert failed and failed[0]["node"] == "ask" and failed[0]["error"]["status"] == 502
    assert events[-1]["event"] == "failed"
    whole = None
    mock.set_fault("anthropic", "status=500")
    try:
        whole = post(gw, "/v1/workflows/flaky/run", {"inputs": {"text": "hi"}})
    finally:
        mock.clear_fault("anthropic")
    assert whole.status_code == 502 and "ask" in whole.json()["error"]["message"]


def test_workflow_inputs_are_typed_and_one_node_runs_alone(gw):
    assert post(gw, "/v1/workflows/triage/run", {"inputs": {"text": 5}}).status_code == 400
    assert post(gw, "/v1/workflows/triage/run", {"inputs": {}}).status_code == 400
    r = post(gw, "/v1/workflows/triage/nodes/file/run", {"values": {"inputs.text": "alone"}})
    assert r.status_code == 200 and r.json()["output"] == "Filed: alone"
    r = post(gw, "/v1/workflows/fetch/run", {"inputs": {}})
    assert r.status_code == 200 and "gpt-4o-mini" in r.json()["outputs"]["models"]


def test_a_workflow_answers_as_a_model(gw):
    client = gw.client()
    r = client.chat.completions.create(model="workflow/triage", messages=[{"role": "user", "content": "urgent thing"}])
    assert "Page someone: urgent thing" in r.choices[0].message.content
    chunks = list(client.chat.completions.create(model="workflow/triage", stream=True,
                                                 messages=[{"role": "user", "content": "calm"}]))
    assert "Filed: calm" in "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    # The last llm node streams as it answers, word by word.
    chunks = list(client.chat.completions.create(model="workflow/triage", stream=True,
                                                 messages=[{"role": "user", "content": "urgent fire"}]))
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 3 and "Page someone: urgent fire" in "".join(pieces)
    assert {c.model for c in chunks} == {"workflow/triage"}
