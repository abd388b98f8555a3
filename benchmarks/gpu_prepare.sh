#!/usr/bin/env bash
# Run HERE (a machine with the package registry) before benchmarks/gpu_check.sh: the GPU machine cannot
# fetch anything. Downloads, for that machine's Python 3.12, the wheels tfus's GPU check needs and its image
# lacks (k-wave-python and its small pure-Python deps, nibabel, SimpleITK) into .gpu-wheels/ (git-ignored),
# to be carried with the working tree (device tool: carry [".gpu-wheels"]).
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-.venv/bin/python}"
rm -rf .gpu-wheels && mkdir -p .gpu-wheels
"$py" -m pip download --quiet --no-deps --only-binary :all: --python-version 3.12 --implementation cp \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform any -d .gpu-wheels \
  k-wave-python==0.6.2 beartype==0.22.9 deepdiff==9.0.0 orderly-set deprecated nibabel==5.4.2 SimpleITK==2.5.7
ls -la .gpu-wheels
