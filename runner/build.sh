#!/usr/bin/env bash
# Build the native runner: runner/build.sh [--abi x86_64|arm64-v8a] [BUILD_DIR]
#
# x86_64 (the default) builds for this host; arm64-v8a cross-builds with Debian's
# g++-aarch64-linux-gnu (runner/cmake/aarch64-linux-gnu.cmake) for an emulated arm64 phone, run
# under qemu-user. BUILD_DIR defaults to build/runner-<abi> at the repository root (git-ignored).
# The onnxruntime library is the installed wheel's for x86_64 and, for arm64-v8a, the same
# version's manylinux aarch64 wheel (fetched once with `pip download` into BUILD_DIR), unless
# ORT_LIBRARY names one. Prints the executable's path last.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
abi=x86_64
if [ "${1:-}" = "--abi" ]; then abi=${2:?--abi needs x86_64 or arm64-v8a}; shift 2; fi
case "$abi" in
    x86_64|arm64-v8a) ;;
    *) echo "runner/build.sh: unknown ABI '$abi' (x86_64 or arm64-v8a; Android: runner/android/build.sh)" >&2; exit 2 ;;
esac
build=${1:-$root/build/runner-$abi}
python=${PYTHON:-}
if [ -z "$python" ]; then
    if [ -x "$root/.venv/bin/python" ]; then python="$root/.venv/bin/python"; else python=python3; fi
fi
toolchain=()
if [ "$abi" = x86_64 ]; then
    ort_library=${ORT_LIBRARY:-$("$python" - <<'PY'
import glob, os, onnxruntime
found = sorted(glob.glob(os.path.join(os.path.dirname(onnxruntime.__file__), "capi", "libonnxruntime.so.1.*")))
print(found[-1] if found else "")
PY
)}
else
    toolchain=(-DCMAKE_TOOLCHAIN_FILE="$here/cmake/aarch64-linux-gnu.cmake")
    ort_library=${ORT_LIBRARY:-}
    if [ -z "$ort_library" ]; then
        version=$("$python" -c "import onnxruntime; print(onnxruntime.__version__)")
        wheels="$build/ort-wheel"
        mkdir -p "$wheels"
        if ! ls "$wheels"/onnxruntime-"$version"-*aarch64.whl >/dev/null 2>&1; then
            "$python" -m pip download -q --no-deps --only-binary=:all: \
                --platform manylinux_2_28_aarch64 --python-version 3.11 \
                "onnxruntime==$version" -d "$wheels" >&2
        fi
        ort_library=$("$python" - "$wheels" "$version" <<'PY'
import pathlib, sys, zipfile
wheels, version = pathlib.Path(sys.argv[1]), sys.argv[2]
(wheel,) = wheels.glob(f"onnxruntime-{version}-*aarch64.whl")
name = f"onnxruntime/capi/libonnxruntime.so.{version}"
target = wheels / pathlib.Path(name).name
if not target.is_file():
    with zipfile.ZipFile(wheel) as archive:
        target.write_bytes(archive.read(name))
print(target)
PY
)
    fi
fi
generator=()
if command -v ninja >/dev/null; then generator=(-G Ninja); fi
cmake -S "$here" -B "$build" "${generator[@]}" "${toolchain[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DORT_LIBRARY="$ort_library" >/dev/null
cmake --build "$build" >&2
# The version `hexfleet runners register` records (CMakeLists.txt's project version).
sed -n 's/^project(hexfleet_runner VERSION \([0-9.]*\).*/\1/p' "$here/CMakeLists.txt" > "$build/VERSION"
echo "$build/hexfleet-runner"
