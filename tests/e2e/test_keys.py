"""Client keys as a product: a config key given by its SHA-256 (`key_sha256`, from
`modelmux key new` / `modelmux key hash`), so the file holds no secret."""

import subprocess

import openai
import pytest

from conftest import BIN, free_port, mock_providers, running_gateway


def new_key():
    out = subprocess.run([str(BIN), "key", "new"], capture_output=True, text=True, check=True).stdout
    fields = dict(line.split(":", 1) for line in out.strip().splitlines())
    return fields["key"].strip(), fields["key_sha256"].strip()


def test_a_key_given_by_its_hash_opens_the_gateway_and_the_file_holds_no_secret(mock, tmp_path):
    key, digest = new_key()
    assert key.startswith("sk-mm-") and len(key) == 46 and len(digest) == 64
    hashed = subprocess.run([str(BIN), "key", "hash"], input=key + "\n", capture_output=True, text=True, check=True)
    assert hashed.stdout.strip() == digest, "`key hash` of the key is the hash `key new` printed"

    def config(port, metrics):
        return f"""
server: {{listen: ["127.0.0.1:{port}"], threads: 1}}
metrics: {{listen: "127.0.0.1:{metrics}"}}
logs: {{backend: off}}
providers:
{mock_providers(mock, "openai")}
models:
  gpt-4o-mini:
    targets: [{{provider: openai, model: gpt-4o-mini}}]
keys:
  - {{name: hashed, key_sha256: {digest}}}
"""
    with running_gateway(config) as g:
        assert key not in open(g.conf).read()
        client = g.client(key=key)  # one pooled client: the same connection, request after request
        for _ in range(3):
            r = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
            assert r.choices[0].message.content == "Mock openai reply to: hi"
        with pytest.raises(openai.AuthenticationError):
            g.client(key=key[:-1] + ("A" if key[-1] != "A" else "B")).models.list()


def test_a_bad_hash_or_both_forms_are_config_problems(tmp_path):
    conf = tmp_path / "m.yaml"
    conf.write_text("""
providers: [{name: p, kind: openai, base_url: "http://127.0.0.1:1/v1", api_key: x}]
models: {m: {targets: [{provider: p, model: m}]}}
keys:
  - {name: short, key_sha256: abc}
  - {name: both, key: sk-12345678, key_sha256: 0000000000000000000000000000000000000000000000000000000000000000}
""")
    checked = subprocess.run([str(BIN), "check", "-c", str(conf)], capture_output=True, text=True)
    assert checked.returncode == 1
    assert "keys[0].key_sha256: 64 hex digits" in checked.stderr
    assert "keys[1].key: give the key (`key`) or its SHA-256" in checked.stderr
