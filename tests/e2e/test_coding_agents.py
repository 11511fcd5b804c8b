"""Coding agents as clients: Claude Code 2.1 and Codex CLI 0.171 (from npm) complete a turn
against the offline config on every vendor kind. Codex speaks only the Responses API; Claude
Code It sends what the gateway used to refuse: system messages inside
`messages`, `thinking: {type: adaptive}`, `output_config`, `context_management`,
`cache_control` on blocks, server tools, to `/v1/messages?beta=true`."""

import os
import subprocess
from pathlib import Path

import pytest

from test_config_in_force import offline_gateway

NODE_BIN = Path(__file__).resolve().parents[2] / ".node/node_modules/.bin"
CLAUDE = os.environ.get("CLAUDE_BIN") or str(NODE_BIN / "claude")
CODEX = os.environ.get("CODEX_BIN") or str(NODE_BIN / "codex")

# One public model per vendor kind in conf/modelmux.yaml.
MODELS = ["claude-sonnet-4", "gpt-4o-mini", "qwen-plus", "qwen-plus-compatible", "ernie-4.0-8k",
          "ernie-4.0-8k-v2", "gemini-2.5-flash", "glm-4-flash"]


@pytest.fixture(scope="module")
def offline(tmp_path_factory):
    with offline_gateway(tmp_path_factory.mktemp("offline")) as g:
        yield g


@pytest.mark.parametrize("model", MODELS)
def test_claude_code_completes_a_turn(offline, model, tmp_path):
    if not Path(CLAUDE).exists():
        pytest.skip("Claude Code is not installed (scripts/test installs it from npm)")
    env = dict(os.environ, ANTHROPIC_BASE_URL=f"http://127.0.0.1:{offline.port}",
               ANTHROPIC_API_KEY="sk-modelmux-demo", DISABLE_TELEMETRY="1",
               CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1", HOME=str(tmp_path))
    r = subprocess.run([CLAUDE, "-p", "Say hello", "--model", model], env=env, capture_output=True,
                       text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "API Error" not in r.stdout + r.stderr, r.stdout + r.stderr
    assert r.stdout.strip(), r.stderr


@pytest.mark.parametrize("model", MODELS)
def test_codex_completes_a_turn(offline, model, tmp_path):
    """`codex exec` with a custom provider (`wire_api = "responses"`): its developer and user
    messages, function tools, a namespace tool and hosted web search go to /v1/responses as a
    stream; the mock calls a tool, Codex runs it (in a scratch directory) and the turn ends."""
    if not Path(CODEX).exists():
        pytest.skip("Codex CLI is not installed (scripts/test installs it from npm)")
    home, work = tmp_path / "codex", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    (home / "config.toml").write_text(f"""
model = "{model}"
model_provider = "mm"
[model_providers.mm]
name = "modelmux"
base_url = "http://127.0.0.1:{offline.port}/v1"
env_key = "MM_KEY"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0
""")
    env = dict(os.environ, CODEX_HOME=str(home), MM_KEY="sk-modelmux-demo", HOME=str(tmp_path))
    r = subprocess.run([CODEX, "exec", "--skip-git-repo-check", "Say hello"], env=env, capture_output=True,
                       text=True, timeout=120, cwd=work)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert r.stdout.strip(), r.stderr[-2000:]
