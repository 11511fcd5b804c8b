"""The console in real headless Chromium (Debian's, driven by Playwright): sign-in, the
playground streaming two models side by side, the request and vendor previews, generated code
that runs, and route edits saved to the YAML file (or refused at their field)."""

import os
import pathlib
import re
import shutil
import subprocess
import tempfile
import time
import sys

import httpx
import pytest

from conftest import DEMO_KEY, free_port, mock_providers, running_gateway, sse_events

playwright = pytest.importorskip("playwright.sync_api")
expect = playwright.expect

ADMIN_KEY = "sk-console-admin-key"
ARTIFACTS = pathlib.Path(__file__).parent / "artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def config(mock, admin_port, flows_dir):
    def make(port, metrics):
        return f"""
apps: {{dir: "{flows_dir}/apps"}}
workflows: {{dir: "{flows_dir}/workflows"}}
server: {{listen: ["127.0.0.1:{port}"]}}
metrics: {{listen: "127.0.0.1:{metrics}"}}
admin: {{listen: "127.0.0.1:{admin_port}", key: {ADMIN_KEY}}}
providers:
{mock_providers(mock, "openai", "dashscope")}
models:
  gpt-4o-mini:
    targets: [{{provider: openai, model: gpt-4o-mini}}]
    price: {{prompt: 0.15, completion: 0.6}}
  qwen-plus:
    targets: [{{provider: dashscope, model: qwen-plus}}]
  text-embedding-3-small:
    targets: [{{provider: openai, model: text-embedding-3-small}}]
keys:
  - {{name: demo, key: {DEMO_KEY}}}
  - {{name: metered, key: sk-console-metered-key, limits: {{rpm: 60}}, budget: {{tokens: 1000000, period: day}}}}
"""
    return make


@pytest.fixture(scope="module")
def console(mock):
    if not CHROMIUM:
        pytest.skip("Debian's chromium is not installed (scripts/test installs it)")
    admin_port = free_port()
    with tempfile.TemporaryDirectory() as flows_dir:
        for d in ("apps", "workflows"):
            os.mkdir(os.path.join(flows_dir, d))
        with running_gateway(config(mock, admin_port, flows_dir)) as gw:
            gw.admin_url = f"http://127.0.0.1:{admin_port}"
            yield gw


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(console, browser):
    context = browser.new_context(viewport={"width": 1500, "height": 1000})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(console.admin_url + "/")
    page.fill("#login-key", ADMIN_KEY)
    page.click("#login-form button")
    page.wait_for_selector("#app:not([hidden])")
    yield page
    assert not errors, errors
    context.close()


def shot(page, name):
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_sign_in_refuses_a_wrong_key_and_the_api_needs_a_session(console, browser):
    page = browser.new_page()
    page.goto(console.admin_url + "/")
    page.fill("#login-key", "not-the-key")
    page.click("#login-form button")
    page.wait_for_selector("#login-error:has-text('not the admin key')")
    assert page.is_hidden("#app")
    shot(page, "console-sign-in-refused")
    page.close()
    assert httpx.get(console.admin_url + "/console/api/overview").status_code == 401
    # A session's cookie alone cannot change anything: the CSRF token must come too.
    login = httpx.post(console.admin_url + "/console/login", json={"key": ADMIN_KEY})
    assert "HttpOnly" in login.headers["set-cookie"] and "SameSite=Strict" in login.headers["set-cookie"]
    cookies = login.cookies
    r = httpx.post(console.admin_url + "/console/api/preview", cookies=cookies,
                   json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 403


def test_two_models_stream_side_by_side_with_their_token_counts(page):
    page.click("header [data-tab=playground]")
    page.check("#pg-models input[value='gpt-4o-mini']")
    page.check("#pg-models input[value='qwen-plus']")
    page.fill("#pg-prompt", "compare these two")
    page.click("#pg-send")
    for model in ["gpt-4o-mini", "qwen-plus"]:
        card = page.locator(f".answer[data-model='{model}']")
        card.locator("h3").wait_for()
        page.wait_for_selector(f".answer.done[data-model='{model}']", timeout=15000)
        assert "compare these two" in card.locator(".text").inner_text()
        stats = card.locator(".stats").inner_text()
        assert "completion tokens" in stats and "first token" in stats
    assert "$" in page.locator(".answer[data-model='gpt-4o-mini'] .stats").inner_text()  # priced
    shot(page, "console-playground")


def test_parameters_switch_off_and_the_dashscope_body_is_shown(page):
    page.click("header [data-tab=playground]")
    page.check("#pg-models input[value='qwen-plus']")
    assert '"temperature"' in page.inner_text("#pg-request")
    page.uncheck("#on-temperature")
    expect(page.locator("#pg-request")).not_to_contain_text("temperature")
    page.select_option("#pg-preview-model", "qwen-plus")
    page.wait_for_selector("#pg-vendor .vendor-preview[data-kind=dashscope]")
    vendor = page.inner_text("#pg-vendor")
    assert '"input"' in vendor and '"parameters"' in vendor and "sk-mock-dashscope" not in vendor
    page.check("#on-seed")
    expect(page.locator("#pg-request")).to_contain_text('"seed": 42')


@pytest.mark.parametrize("api", ["responses", "messages"])
def test_the_api_switch_streams_each_model_in_that_api_and_its_code_runs(page, api, tmp_path):
    page.click("header [data-tab=playground]")
    page.select_option("#pg-api", api)
    page.check("#pg-models input[value='gpt-4o-mini']")
    page.check("#pg-models input[value='qwen-plus']")
    page.fill("#pg-prompt", f"hello over {api}")
    request = page.inner_text("#pg-request")
    assert ('"input"' in request) if api == "responses" else ('"max_tokens"' in request and '"messages"' in request)
    page.click("#pg-send")
    for model, vendor in [("gpt-4o-mini", "openai"), ("qwen-plus", "dashscope")]:
        page.wait_for_selector(f".answer.done[data-model='{model}'][data-api='{api}']", timeout=15000)
        card = page.locator(f".answer[data-model='{model}']")
        assert card.locator(".text").inner_text() == f"Mock {vendor} reply to: hello over {api}"
        stats = card.locator(".stats").inner_text()
        assert "completion tokens" in stats and "? prompt" not in stats, stats
    assert "$" in page.locator(".answer[data-model='gpt-4o-mini'] .stats").inner_text()
    code_for(page, "python")
    expect(page.locator("#code")).to_contain_text(f"client.{api}.create(")
    expect(page.locator("#code")).to_contain_text(f"hello over {api}")
    python = page.inner_text("#code")
    script = tmp_path / "snippet.py"
    script.write_text(python)
    out = subprocess.run([sys.executable, str(script)], env=dict(os.environ, MODELMUX_API_KEY=DEMO_KEY),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert f"Mock openai reply to: hello over {api}" in out.stdout
    assert f"Mock dashscope reply to: hello over {api}" in out.stdout


def code_for(page, lang):
    page.click(f".code-tabs [data-lang={lang}]")
    marker = {"python": "import os", "curl": "curl ", "node": "import ", "yaml": "models",
              "unified": "/v1/unified"}
    expect(page.locator("#code")).to_contain_text(marker[lang])
    return page.inner_text("#code")


def test_generated_python_and_curl_run_against_the_gateway(page, console, tmp_path):
    page.click("header [data-tab=playground]")
    page.fill("#pg-prompt", "generated code works")
    expect(page.locator("#code")).to_contain_text("generated code works")
    python = code_for(page, "python")
    curl = code_for(page, "curl")
    assert DEMO_KEY not in python and DEMO_KEY not in curl
    env = dict(os.environ, MODELMUX_API_KEY=DEMO_KEY)
    script = tmp_path / "snippet.py"
    script.write_text(python)
    out = subprocess.run([sys.executable, str(script)], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "generated code works" in out.stdout
    out = subprocess.run(["bash", "-c", curl], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "generated code works" in out.stdout, out.stdout + out.stderr
    unified = code_for(page, "unified").split("# Python (standard library only)\n", 1)[1]
    script.write_text(unified)
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "generated code works" in out.stdout, out.stderr


def test_a_model_added_in_the_form_is_saved_and_served(page, console):
    page.click("header [data-tab=routes]")
    page.click("#routes-add")
    page.fill("[data-path='models.new-model-1']", "added-in-console")
    page.press("[data-path='models.new-model-1']", "Tab")
    model = "[data-path='models.added-in-console.targets[0].model']"
    page.wait_for_selector(model)
    page.fill(model, "gpt-4o-mini")
    page.press(model, "Tab")
    expect(page.locator("#routes-yaml")).to_have_value(re.compile(r"added-in-console:[\s\S]*model: gpt-4o-mini"))
    expect(page.locator("#routes-message")).to_have_text("Valid.")
    assert "+ " in page.inner_text("#routes-diff")
    page.click("#routes-save")
    page.wait_for_selector("#routes-message:has-text('Saved and reloaded.')")
    shot(page, "console-routes")
    text = pathlib.Path(console_conf(console)).read_text()
    assert "added-in-console" in text and "sk-mock-openai" in text  # the rest of the file kept
    assert pathlib.Path(console_conf(console) + ".bak").exists()
    r = console.client().chat.completions.create(model="added-in-console",
                                                 messages=[{"role": "user", "content": "hi"}])
    assert r.model == "added-in-console"


def test_a_form_edit_keeps_the_focus_and_changes_only_its_model(page, console):
    page.click("header [data-tab=routes]")
    model = "[data-path='models.qwen-plus.targets[0].model']"
    page.fill(model, "qwen-max")
    page.press(model, "Tab")
    expect(page.locator("#routes-message")).to_have_text("Valid.")
    # The form was drawn again with the check's answer; the focus stayed where Tab put it.
    focused = page.evaluate("document.activeElement.dataset.path")
    assert focused == "models.qwen-plus.targets[0].weight", focused
    changed = [l for l in page.inner_text("#routes-diff").splitlines() if l.startswith(("+ ", "- "))]
    assert changed and all("qwen" in l or "targets" in l or "provider" in l or "model" in l for l in changed), changed
    assert not any("gpt-4o-mini" in l or "price" in l for l in changed), changed
    # A new model comes first, named, where the buttons are.
    page.click("#routes-add")
    first = page.locator("#routes-form .route").first
    assert first.get_attribute("data-model").startswith("new-model-")
    assert page.evaluate("document.activeElement.dataset.path").startswith("models.new-model-")


def console_conf(console):
    return console.process.proc.args[-1]


def test_an_invalid_edit_shows_the_problem_at_its_field_and_changes_nothing(page, console):
    before = pathlib.Path(console_conf(console)).read_text()
    page.click("header [data-tab=routes]")
    expect(page.locator("#routes-yaml")).to_have_value(re.compile("qwen-plus"))
    yaml = page.input_value("#routes-yaml").replace("provider: dashscope", "provider: nobody")
    page.fill("#routes-yaml", yaml)
    page.click("#routes-save")
    page.wait_for_selector("#routes-problems li[data-path='models.qwen-plus.targets[0].provider']")
    assert "nothing was saved" in page.inner_text("#routes-message")
    field = page.locator("#routes-form [data-path='models.qwen-plus.targets[0].provider']")
    assert "invalid" in field.get_attribute("class")
    shot(page, "console-routes-problem")
    assert pathlib.Path(console_conf(console)).read_text() == before


def test_status_shows_each_target_with_its_sparklines_and_last_error(page, console):
    console.client().chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(Exception):
        console.client().chat.completions.create(model="qwen-plus",
                                                 messages=[{"role": "user", "content": "[[mock status=500]] x"}])
    page.click("header [data-tab=status]")
    failing = page.locator("tr[data-target='dashscope/qwen-plus']")
    failing.locator("button:has-text('last error')").click()
    expect(page.locator("tr.last-error:visible")).to_contain_text("mock dashscope error 500")
    row = page.locator("tr[data-target='openai/gpt-4o-mini']")
    row.wait_for()
    expect(row.locator("td").nth(3)).not_to_have_text("0")
    assert row.locator("svg.spark").count() == 2
    assert row.locator(".badge").inner_text() == "closed"
    shot(page, "console-status")


def test_an_app_made_in_the_console_answers_the_python_sdk(page, console):
    page.click("header [data-tab=apps]")
    page.click("#app-new")
    page.fill("#app-name", "greeter")
    page.select_option("#app-model", "gpt-4o-mini")
    page.fill("#app-user", "Greet {{name}} warmly")
    page.fill("#app-variables input[data-var=name]", "Ana")
    expect(page.locator("#app-preview")).to_contain_text("Greet Ana warmly")
    page.click("#app-save")
    expect(page.locator("#app-message")).to_have_text("Saved greeter version 1.")
    shot(page, "console-apps")
    r = console.client().chat.completions.create(model="app/greeter", messages=[{"role": "user", "content": "Bea"}])
    assert "Greet Bea warmly" in r.choices[0].message.content


def test_try_it_runs_the_version_the_form_shows(page, console):
    """A label points production at version 1; the form shows version 2, and then an unsaved
    edit: Try it runs exactly what is shown each time."""
    page.click("header [data-tab=apps]")
    page.click("#app-new")
    page.fill("#app-name", "shown")
    page.select_option("#app-model", "gpt-4o-mini")
    page.fill("#app-user", "first {{x}}")
    page.click("#app-save")
    expect(page.locator("#app-message")).to_have_text("Saved shown version 1.")
    page.select_option("#app-label", "staging")
    page.fill("#app-user", "second {{x}}")
    page.click("#app-save")
    expect(page.locator("#app-message")).to_have_text("Saved shown version 2.")
    page.fill("#app-variables input[data-var=x]", "run")
    page.click("#app-try")
    expect(page.locator("#app-answer")).to_contain_text("second run")
    page.fill("#app-user", "third {{x}}")
    page.fill("#app-variables input[data-var=x]", "edit")
    page.click("#app-try")
    expect(page.locator("#app-answer")).to_contain_text("third edit")
    expect(page.locator("#app-answer")).to_contain_text("unsaved")


def test_a_run_right_after_a_save_runs_what_was_saved(console):
    """The console's Run goes back into the gateway on a kept-alive connection: it must get
    the version the save just made, every time."""
    s = httpx.Client(base_url=console.admin_url)
    csrf = s.post("/console/login", json={"key": ADMIN_KEY}).json()["csrf"]
    h = {"x-csrf-token": csrf}
    for version in range(1, 6):
        wf = {"name": "versions", "inputs": {"text": "string"}, "edges": [],
              "nodes": [{"id": "out", "type": "template", "template": f"v{version} {{{{inputs.text}}}}"}]}
        r = s.post("/console/api/workflows/save", json={"workflow": wf}, headers=h)
        assert r.status_code == 200, r.text
        r = s.post("/console/api/playground", headers=h,
                   json={"path": "/v1/workflows/versions/run", "body": {"inputs": {"text": "x"}}})
        assert r.json()["outputs"] == {"out": f"v{version} x"}, r.text


def test_the_playground_offers_chat_models_and_status_no_phantom_numbers(page, console):
    page.wait_for_selector("#pg-models label", state="attached")  # drawn once the overview has loaded
    labels = page.locator("#pg-models label").all_inner_texts()
    assert "gpt-4o-mini" in labels and "text-embedding-3-small" not in labels, labels
    # A limit nothing has been admitted under yet has nothing "remaining" to show.
    r = httpx.get(console.admin_url + "/admin/status", headers={"authorization": f"Bearer {ADMIN_KEY}"}).json()
    metered = next(k for k in r["keys"] if k["name"] == "metered")
    assert metered["rpm"] == 60 and metered["remaining_requests"] is None, metered
    page.click("header [data-tab=status]")
    expect(page.locator("#status-limits")).to_contain_text("metered")


def test_a_workflow_dragged_wired_saved_and_run_over_http(page, console):
    page.click("header [data-tab=workflows]")
    page.click("#wf-new")
    page.fill("#wf-name", "dragged")
    page.press("#wf-name", "Tab")
    page.fill("#wf-inputs", "text:string")
    page.press("#wf-inputs", "Tab")
    page.drag_and_drop("#wf-palette [data-type=template]", "#wf-canvas", target_position={"x": 120, "y": 120})
    page.drag_and_drop("#wf-palette [data-type=llm]", "#wf-canvas", target_position={"x": 420, "y": 160})
    page.click("[data-node=template-1] .port.out")
    page.click("[data-node=llm-1] .port.in")
    page.click("[data-node=template-1] .body")
    page.fill("#wf-panel [data-field=template]", "Say: {{inputs.text}}")
    page.click("[data-node=llm-1] .body")
    page.select_option("#wf-panel [data-field=model]", "gpt-4o-mini")
    page.fill("#wf-panel [data-field=prompt]", "{{template-1.output}}")
    page.click("#wf-save")
    expect(page.locator("#wf-message")).to_have_text("Saved dragged.")
    expect(page.locator("#wf-yaml")).to_contain_text("layout:")
    shot(page, "console-workflow")
    r = httpx.post(console.base_url + "/v1/workflows/dragged/run", json={"inputs": {"text": "hello"}, "stream": True},
                   headers={"authorization": f"Bearer {DEMO_KEY}"}, timeout=30)
    events = [e for e in sse_events(r.text) if e != "[DONE]"]
    finished = [e["node"] for e in events if e["event"] == "node_finished"]
    assert finished == ["template-1", "llm-1"]
    assert "Say: hello" in events[-1]["outputs"]["llm-1"]
    page.fill("#wf-run-inputs input[data-input=text]", "from the console")
    page.click("#wf-run")
    expect(page.locator("#wf-log")).to_contain_text("outputs")
    expect(page.locator("[data-node=llm-1]")).to_have_class(re.compile("finished"))
    # Saving again keeps what was typed to run; the YAML pane shows the saved file on opening.
    page.click("#wf-save")
    expect(page.locator("#wf-message")).to_have_text("Saved dragged.")
    assert page.input_value("#wf-run-inputs input[data-input=text]") == "from the console"
    page.click("#wf-new")
    expect(page.locator("#wf-yaml")).to_have_text("")
    page.click("#wf-run")
    expect(page.locator("#wf-message")).to_contain_text("Save the workflow first")
    page.select_option("#wf-pick", "dragged")
    expect(page.locator("#wf-yaml")).to_contain_text("layout:")


def test_logs_show_a_request_made_a_moment_ago_and_usage_draws_from_the_rows(page, console):
    gw = httpx.Client(base_url=console.base_url, headers={"authorization": f"Bearer {DEMO_KEY}"}, timeout=30)
    made = gw.post("/v1/chat/completions", json={"model": "qwen-plus", "messages": [{"role": "user", "content": "find me in the logs"}]})
    other = gw.post("/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "and me"}]})
    request_id = made.headers["x-request-id"]
    page.click("header [data-tab=logs]")
    page.check("#logs-live")
    row = page.locator(f"#logs-rows tr[data-request-id='{request_id}']")
    row.wait_for(timeout=10000)
    assert "qwen-plus" in row.inner_text() and "200" in row.inner_text()
    page.fill("#logs-model", "gpt-4o-mini")
    page.click("#logs-form button[type=submit]")
    expect(page.locator(f"#logs-rows tr[data-request-id='{request_id}']")).to_have_count(0)
    expect(page.locator(f"#logs-rows tr[data-request-id='{other.headers['x-request-id']}']")).to_have_count(1)
    # The filtered rows export as CSV, with the console's session.
    exported = page.evaluate("fetch(document.querySelector('#logs-csv').href).then(r => r.text())")
    assert other.headers["x-request-id"] in exported and request_id not in exported
    page.select_option("#logs-since", "900")
    page.fill("#logs-provider", "openai")
    page.click("#logs-form button[type=submit]")
    expect(page.locator(f"#logs-rows tr[data-request-id='{other.headers['x-request-id']}']")).to_have_count(1)
    page.locator(f"#logs-rows tr[data-request-id='{other.headers['x-request-id']}']").click()
    expect(page.locator("#logs-detail")).to_contain_text(other.headers["x-request-id"])
    expect(page.locator("#logs-detail")).to_contain_text("attempt 1: ok")
    expect(page.locator("#logs-detail .attempts")).to_contain_text("openai/gpt-4o-mini")
    shot(page, "console-logs")
    page.click("header [data-tab=usage]")
    page.select_option("#usage-group", "model")
    bar = page.locator(".bar-row[data-group='qwen-plus']")
    bar.wait_for()
    assert "requests" in bar.inner_text()
    page.select_option("#usage-metric", "cost")
    expect(page.locator(".bar-row[data-group='gpt-4o-mini'] .bar-value")).to_contain_text("$")
    expect(page.locator(".bar-row[data-group='qwen-plus'] .bar-value")).to_contain_text("unpriced")
    # Bars drawn from the rows: the priced model's cost is the longest bar, the unpriced one has none.
    width = lambda g: page.locator(f".bar-row[data-group='{g}'] .bar-fill").evaluate("e => e.style.width")
    assert (width("gpt-4o-mini"), width("qwen-plus")) == ("100%", "0%")
    # Requests per day, stacked by model: today's bar has a segment per model.
    page.select_option("#usage-metric", "requests")
    page.select_option("#usage-group", "day")
    page.select_option("#usage-stack", "model")
    today = time.strftime("%Y-%m-%d", time.gmtime())
    for model in ("qwen-plus", "gpt-4o-mini"):
        expect(page.locator(f".bar-row[data-group='{today}'] .bar-fill[data-stack='{model}']")).to_have_count(1)
    expect(page.locator("#usage-chart .legend")).to_contain_text("qwen-plus")
    # Each budgeted key against its budget.
    expect(page.locator("#usage-budgets .bar-row[data-key='metered']")).to_contain_text("of 1000000 tokens")
    shot(page, "console-usage")
    page.select_option("#usage-metric", "p99")
    expect(page.locator(f".bar-row[data-group='{today}'] .bar-value")).to_contain_text("p99")


def test_keys_are_made_shown_once_and_revoked_in_the_console_with_an_audit_trail(page, console):
    page.click("header [data-tab=keys]")
    expect(page.locator("#keys-rows tr[data-key='demo']")).to_contain_text("config (read-only)")
    page.fill("#key-name", "console-made")
    page.fill("#key-models", "gpt-4o-mini")
    page.fill("#key-labels", "team=web, user=ana")
    page.click("#key-form button[type=submit]")
    secret = page.locator("#key-secret pre.secret").inner_text().strip()
    assert secret.startswith("sk-mm-")
    expect(page.locator("#key-secret")).to_contain_text("not shown again")
    gw = httpx.Client(base_url=console.base_url, headers={"authorization": f"Bearer {secret}"}, timeout=30)
    hi = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    assert gw.post("/v1/chat/completions", json=hi).status_code == 200
    row = page.locator("#keys-rows tr[data-key='console-made']")
    expect(row).to_contain_text("team=web")
    expect(row).to_contain_text(secret[:10])
    shot(page, "console-keys")
    row.locator("button", has_text="Revoke").click()
    expect(row).to_have_class(re.compile("revoked"))
    assert gw.post("/v1/chat/completions", json=hi).status_code == 401, "revoked at once, on the open connection too"
    audit = page.locator("#audit-rows")
    expect(audit).to_contain_text("key.revoke")
    expect(audit).to_contain_text("key.create")
    expect(audit).to_contain_text("console session")
    assert secret not in page.content().replace(page.locator("#key-secret").inner_html(), "")


def test_the_api_tab_renders_the_openapi_document_of_the_config_in_force(page, console):
    page.click("header [data-tab=api]")
    expect(page.locator("#api-title")).to_contain_text("OpenAPI 3.1.0")
    chat = page.locator("details.operation[data-path='/v1/chat/completions']")
    chat.locator("summary").click()
    # The body's fields, resolved from the components; the model is one of this config's.
    expect(chat).to_contain_text("messages")
    expect(chat).to_contain_text("required")
    expect(chat).to_contain_text('"qwen-plus"')
    expect(chat).to_contain_text("4XX")
    page.fill("#api-filter", "keys")
    expect(page.locator("details.operation[data-path='/admin/keys']").first).to_be_visible()
    assert page.locator("details.operation[data-path='/v1/chat/completions']").count() == 0
    page.fill("#api-filter", "")
    page.locator("details.operation[data-path='/v1/chat/completions'] summary").click()
    shot(page, "console-api")
