#!/usr/bin/env bash
# Set up a fresh Debian machine to build and test diffbook. Safe to run again (idempotent).
#   - system packages: Fashion-MNIST (dataset-fashion-mnist) and Chromium (for the site test)
#   - .venv with the exact pins of requirements.txt (diffbook itself installed editable)
#   - a "python3" Jupyter kernelspec inside .venv, so chapters execute with the .venv's Python
# Runs as root, or with sudo when available. Non-interactive.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo -n env DEBIAN_FRONTEND=noninteractive)
else
    echo "setup.sh: apt-get needs root; run as root or install sudo" >&2
    exit 1
fi

APT_PACKAGES=(dataset-fashion-mnist chromium)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done
# Always refresh the package lists (cheap, and apt-cache needs them); install only what is missing.
"${SUDO[@]}" apt-get update -q
if [ "${#missing[@]}" -gt 0 ]; then
    "${SUDO[@]}" apt-get install -y -q "${missing[@]}"
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q -r requirements.txt
# The peer check of the book's CLIP tokenizer (tests/test_text.py) reads open-clip-torch's tokenizer module. Its
# declared dependencies would replace torch with a multi-GB CUDA build (torchvision), so it comes without them;
# the tokenizer module itself needs only ftfy (with wcwidth) and regex, pure or small wheels.
.venv/bin/python -m pip install -q --no-deps open-clip-torch==3.3.0 ftfy==6.3.1 wcwidth==0.9.5 regex==2026.12.2
# Make the kernel name "python3" (the chapters' kernelspec) resolve to this venv's Python.
.venv/bin/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (diffbook)" >/dev/null
echo "setup.sh: ready (.venv: $(.venv/bin/python --version 2>&1))"
