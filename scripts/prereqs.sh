# Sourced by scripts/run and scripts/test: installs what a fresh machine lacks.
# Pingora builds zlib-ng, which needs cmake; the tests need Python with the official SDKs.

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "need root to install: $*" >&2; return 1; fi
}

apt_updated=""
apt_install() {
  # Installs the Debian packages given whose command (name:command) is missing.
  local missing=()
  for spec in "$@"; do
    local pkg="${spec%%:*}" cmd="${spec##*:}"
    command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if ! command -v apt-get >/dev/null; then
    echo "please install: ${missing[*]}" >&2; return 1
  fi
  if [ -z "$apt_updated" ]; then as_root apt-get update -qq; apt_updated=1; fi
  echo "installing ${missing[*]}" >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

ensure_build_tools() {
  command -v cargo >/dev/null || { echo "cargo not found: install Rust from rustup.rs" >&2; exit 1; }
  apt_install cmake:cmake
}

ensure_test_services() {
  # The Redis-backed limits are tested against a real server the tests start themselves;
  # the HTTPS tests make their certificates with openssl; the metrics and the systemd unit are
  # checked by the tools their users run (promtool from Debian's prometheus, systemd-analyze);
  # the console is tested in Debian's Chromium, driven by Playwright (no browser download).
  apt_install redis-server:redis-server openssl:openssl prometheus:promtool systemd:systemd-analyze \
    chromium:chromium
  # The shared log store is tested against a real PostgreSQL server, started by the tests as
  # the `postgres` user (Debian's package keeps its programs off PATH).
  if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    if [ -z "$apt_updated" ]; then as_root apt-get update -qq; apt_updated=1; fi
    echo "installing postgresql" >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
}

ensure_python_test_env() {
  local venv="$ROOT/.venv"
  if [ ! -x "$venv/bin/python" ]; then
    if ! python3 -m venv "$venv" 2>/dev/null; then
      # Debian's python3 ships venv separately.
      as_root apt-get update -qq && as_root apt-get install -y -qq python3-venv >/dev/null
      python3 -m venv "$venv"
    fi
  fi
  local stamp="$venv/.requirements.sha"
  local want; want=$(sha256sum "$ROOT/tests/requirements.txt" | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$ROOT/tests/requirements.txt"
    echo "$want" > "$stamp"
  fi
}

ensure_coding_agents() {
  # Claude Code and Codex CLI from npm (Debian's nodejs and npm), run against the gateway by
  # the tests.
  apt_install nodejs:node npm:npm
  local dir="$ROOT/.node" want="@anthropic-ai/claude-code@2.1.197 @openai/codex@0.171.0"
  if [ "$(cat "$dir/.installed" 2>/dev/null)" != "$want" ]; then
    mkdir -p "$dir"
    # shellcheck disable=SC2086 # two package names
    npm install --silent --no-audit --no-fund --prefix "$dir" $want
    echo "$want" > "$dir/.installed"
  fi
}
