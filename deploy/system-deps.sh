#!/usr/bin/env bash
# System libraries that the Python wheels need: opencv-python (pulled in by k-wave-python) links
# libGL and glib. Installs them with apt-get when missing and we are root; otherwise says what to do.
set -euo pipefail
missing=()
ldconfig -p 2>/dev/null | grep -q 'libGL.so.1' || missing+=(libgl1)
ldconfig -p 2>/dev/null | grep -q 'libglib-2.0.so.0' || missing+=(libglib2.0-0)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing system libraries: ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "warning: missing system libraries ${missing[*]}; install them (e.g. apt-get install ${missing[*]})" >&2
fi
