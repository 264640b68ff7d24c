#!/usr/bin/env bash
# Build the host (x86-64) native runner: runner/build.sh [BUILD_DIR]
#
# BUILD_DIR defaults to build/runner-host at the repository root (git-ignored). The onnxruntime
# library comes from the installed wheel ($PYTHON, default .venv/bin/python, else python3) unless
# ORT_LIBRARY names one. Prints the executable's path last.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
build=${1:-$root/build/runner-host}
python=${PYTHON:-}
if [ -z "$python" ]; then
    if [ -x "$root/.venv/bin/python" ]; then python="$root/.venv/bin/python"; else python=python3; fi
fi
ort_library=${ORT_LIBRARY:-$("$python" - <<'PY'
import glob, os, onnxruntime
found = sorted(glob.glob(os.path.join(os.path.dirname(onnxruntime.__file__), "capi", "libonnxruntime.so.1.*")))
print(found[-1] if found else "")
PY
)}
generator=()
if command -v ninja >/dev/null; then generator=(-G Ninja); fi
cmake -S "$here" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DORT_LIBRARY="$ort_library" >/dev/null
cmake --build "$build" >&2
echo "$build/hexfleet-runner"
