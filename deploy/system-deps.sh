#!/usr/bin/env bash
# System packages: opencv-python (pulled in by k-wave-python) links libGL and glib; mricron-data ships the
# Colin27 T1 head. Installs them with apt-get when missing and we are root; otherwise says what to do.
set -euo pipefail
missing=()
ldconfig -p 2>/dev/null | grep -q 'libGL.so.1' || missing+=(libgl1)
ldconfig -p 2>/dev/null | grep -q 'libglib-2.0.so.0' || missing+=(libglib2.0-0)
# The Colin27 head T1 (tfus pseudo-ct's registration template and the demo's real head; BSD-3-clause).
[ -f /usr/share/mricron/templates/ch2.nii.gz ] || missing+=(mricron-data)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing system libraries: ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "warning: missing system libraries ${missing[*]}; install them (e.g. apt-get install ${missing[*]})" >&2
fi
