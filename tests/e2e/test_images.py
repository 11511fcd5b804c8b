"""Image generation with the official openai SDK: passed through to OpenAI, a DashScope Wanx
task submitted and polled (failing, never finishing, abandoned by its client), Qianfan's sd_xl
and Gemini's native image output, as URLs or base64."""

import base64
import time

import httpx
import openai
import pytest

from conftest import DEMO_KEY, gateway_of, mock_providers

PNG = b"\x89PNG\r\n\x1a\n"


def config(mock):
    def make(port, metrics):
        return f"""
server: {{listen: ["127.0.0.1:{port}"]}}
metrics: {{listen: "127.0.0.1:{metrics}"}}
providers:
{mock_providers(mock, "openai", "anthropic", "qianfan", "gemini")}
  - name: dashscope
    kind: dashscope
    base_url: "{mock.url("dashscope")}"
    api_key: sk-mock-dashscope
    timeouts: {{total: 3s}}
models:
  dall-e-3: {{targets: [{{provider: openai, model: dall-e-3}}]}}
  wanx2.1-t2i-turbo: {{targets: [{{provider: dashscope, model: wanx2.1-t2i-turbo}}], retry: {{attempts: 1}}}}
  sd_xl: {{targets: [{{provider: qianfan, model: sd_xl}}]}}
  gemini-2.5-flash-image: {{targets: [{{provider: gemini, model: gemini-2.5-flash-image}}]}}
  claude: {{targets: [{{provider: anthropic, model: claude-x}}]}}
keys: [{{name: all, key: {DEMO_KEY}}}]
"""
    return make


gw = gateway_of(config)


def image_bytes(item):
    if item.b64_json:
        return base64.b64decode(item.b64_json)
    if item.url.startswith("data:"):
        return base64.b64decode(item.url.split(",", 1)[1])
    return httpx.get(item.url).content


@pytest.mark.parametrize("model", ["dall-e-3", "wanx2.1-t2i-turbo", "sd_xl", "gemini-2.5-flash-image"])
@pytest.mark.parametrize("response_format", ["url", "b64_json"])
def test_every_vendor_kind_draws_as_url_or_base64(gw, model, response_format):
    r = gw.client().images.generate(model=model, prompt="a cat on a mat", size="1024x1024",
                                    response_format=response_format)
    assert len(r.data) == 1 and r.created > 0
    item = r.data[0]
    if response_format == "b64_json":
        assert item.b64_json and not item.url
    else:
        assert item.url and not item.b64_json
    assert image_bytes(item).startswith(PNG)


def test_several_images_and_the_vendors_own_words(gw, mock):
    client = gw.client()
    assert len(client.images.generate(model="sd_xl", prompt="cats", n=3).data) == 3
    assert len(client.images.generate(model="gemini-2.5-flash-image", prompt="cats", n=2).data) == 2
    wanx = client.images.generate(model="wanx2.1-t2i-turbo", prompt="cats", n=2, size="1280x720")
    assert len(wanx.data) == 2 and "Expires=" in wanx.data[0].url
    assert wanx.data[0].revised_prompt.startswith("cats")
    with pytest.raises(openai.BadRequestError) as e:
        client.images.generate(model="dall-e-3", prompt="cats", n=2)
    assert "n=1" in e.value.body["message"]


def test_a_dashscope_task_that_fails_is_an_openai_error_with_the_vendors_message(gw):
    client = gw.client()
    with pytest.raises(openai.BadRequestError) as e:
        client.images.generate(model="wanx2.1-t2i-turbo", prompt="[[mock task=fail]] a cat")
    assert e.value.body["message"] == "Output data may contain inappropriate content."
    assert e.value.body["param"] == "prompt"
    with pytest.raises(openai.APIStatusError) as e:
        client.images.generate(model="wanx2.1-t2i-turbo", prompt="[[mock task=error]] a cat")
    assert e.value.status_code == 502 and "failed while drawing" in e.value.body["message"]


def tasks(mock):
    return httpx.get(mock.url("dashscope") + "/__mock/tasks").json()


def test_a_task_that_never_finishes_ends_at_the_deadline_and_is_canceled(gw, mock):
    before = set(tasks(mock))
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as e:
        gw.client().images.generate(model="wanx2.1-t2i-turbo", prompt="[[mock task=stuck]] a cat")
    assert e.value.status_code == 504 and time.monotonic() - started < 5
    (task,) = [t for i, t in tasks(mock).items() if i not in before]
    assert task["status"] == "CANCELED" and task["polls"] >= 2


def test_a_client_that_hangs_up_stops_the_polling(gw, mock):
    before = set(tasks(mock))
    with pytest.raises(openai.APITimeoutError):
        gw.client(timeout=0.6).images.generate(model="wanx2.1-t2i-turbo",
                                               prompt="[[mock task=stuck]] a cat")
    time.sleep(0.3)
    (task_id,) = [i for i in tasks(mock) if i not in before]
    polls = tasks(mock)[task_id]["polls"]
    time.sleep(1.5)
    assert tasks(mock)[task_id] == {"status": "CANCELED", "polls": polls}


def test_bad_requests_and_vendors_without_images_are_400s(gw):
    client = gw.client()
    with pytest.raises(openai.BadRequestError) as e:
        client.images.generate(model="claude", prompt="a cat")
    assert e.value.body["param"] == "model" and "`claude`" in e.value.body["message"]
    for body, param in [({"model": "sd_xl"}, "prompt"), ({"model": "sd_xl", "prompt": 5}, "prompt"),
                        ({"model": "sd_xl", "prompt": "x", "size": "big"}, "size"),
                        ({"model": "sd_xl", "prompt": "x", "n": 0}, "n"),
                        ({"model": "sd_xl", "prompt": "x", "response_format": "gif"}, "response_format")]:
        r = httpx.post(gw.base_url + "/v1/images/generations", json=body,
                       headers={"authorization": f"Bearer {DEMO_KEY}"})
        assert r.status_code == 400 and r.json()["error"]["param"] == param, (body, r.text)
    with pytest.raises(openai.BadRequestError) as e:
        client.images.generate(model="gemini-2.5-flash-image", prompt="something forbidden")
    assert e.value.body["code"] == "content_filter"


@pytest.mark.parametrize("model,vendor", [("dall-e-3", "openai"), ("wanx2.1-t2i-turbo", "dashscope"),
                                          ("sd_xl", "qianfan"), ("gemini-2.5-flash-image", "gemini")])
def test_a_vendor_error_is_an_openai_error(gw, mock, model, vendor):
    mock.set_fault(vendor, "status=500")
    try:
        with pytest.raises(openai.APIStatusError) as e:
            gw.client().images.generate(model=model, prompt="a cat")
    finally:
        mock.clear_fault(vendor)
    assert e.value.status_code == 502 and e.value.body["type"] != "invalid_request_error"
    with pytest.raises(openai.BadRequestError):
        gw.client().images.generate(model=model, prompt="[[mock status=400]] a cat")
