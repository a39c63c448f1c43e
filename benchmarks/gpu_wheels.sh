#!/usr/bin/env bash
# Download into .whl/ the wheels that benchmarks/gpu_check.py needs and the device
# machine's python3 (Python 3.12, torch, transformers, peft, pyarrow, fsspec, xxhash,
# pyyaml, tqdm already there; /work/.library/device/KINDS.md) lacks: datasets and
# its dill and multiprocess, and platformdirs. Same versions as the CI venv.
# Run it once here, from anywhere in the checkout the device tool sends; then give
# the tool's `run` carry=[".whl"] and the command in gpu_check.py's docstring.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
exclude="$(git rev-parse --git-path info/exclude)"
mkdir -p "$(dirname "$exclude")"
grep -qxF '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >>"$exclude"
rm -rf .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl \
    datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 platformdirs==4.14.8
ls .whl
