"""Coding agents as clients: Claude Code 2.1 (from npm) completes a turn against the offline
config on every vendor kind. It sends what the gateway used to refuse: system messages inside
`messages`, `thinking: {type: adaptive}`, `output_config`, `context_management`,
`cache_control` on blocks, server tools, to `/v1/messages?beta=true`."""

import os
import subprocess
from pathlib import Path

import pytest

from test_config_in_force import offline_gateway

CLAUDE = os.environ.get("CLAUDE_BIN") or str(Path(__file__).resolve().parents[2] / ".node/node_modules/.bin/claude")

# One public model per vendor kind in conf/modelmux.yaml.
MODELS = ["claude-sonnet-4", "gpt-4o-mini", "qwen-plus", "qwen-plus-compatible", "ernie-4.0-8k",
          "ernie-4.0-8k-v2", "gemini-2.5-flash", "glm-4-flash"]


@pytest.fixture(scope="module")
def offline(tmp_path_factory):
    if not Path(CLAUDE).exists():
        pytest.skip("Claude Code is not installed (scripts/test installs it from npm)")
    with offline_gateway(tmp_path_factory.mktemp("offline")) as g:
        yield g


@pytest.mark.parametrize("model", MODELS)
def test_claude_code_completes_a_turn(offline, model, tmp_path):
    env = dict(os.environ, ANTHROPIC_BASE_URL=f"http://127.0.0.1:{offline.port}",
               ANTHROPIC_API_KEY="sk-modelmux-demo", DISABLE_TELEMETRY="1",
               CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1", HOME=str(tmp_path))
    r = subprocess.run([CLAUDE, "-p", "Say hello", "--model", model], env=env, capture_output=True,
                       text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "API Error" not in r.stdout + r.stderr, r.stdout + r.stderr
    assert r.stdout.strip(), r.stderr
