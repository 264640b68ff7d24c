#!/usr/bin/env bash
# Build the runner for a real Android phone (arm64-v8a, API level >= 29) and lay out its bundle.
#
#   runner/android/build.sh --ndk DIR --ort-aar FILE [--qnn-sdk DIR] [--htp-arch 73] [--api 29] [OUT]
#
#   --ndk       the Android NDK (r26 or newer): DIR/build/cmake/android.toolchain.cmake
#   --ort-aar   ONNX Runtime's Android package with the QNN EP built in, from Maven Central:
#               com.microsoft.onnxruntime:onnxruntime-android-qnn (its jni/arm64-v8a/libonnxruntime.so)
#   --qnn-sdk   Qualcomm's QNN / QAIRT SDK: its lib/aarch64-android/libQnnHtp.so, the
#               libQnnHtpV<arch>Stub.so and lib/hexagon-v<arch>/unsigned/libQnnHtpV<arch>Skel.so
#               join the bundle (the phone's NPU needs them; without --qnn-sdk the bundle runs
#               the CPU EP only)
#   --htp-arch  the Hexagon arch of the phones (69 SM8450, 73 SM8550, 75 SM8650, 79 SM8750);
#               repeat the build per arch, or copy every arch's stub and skel into one bundle
#   OUT         the bundle folder (default build/runner-android-arm64-v8a)
#
# Then: hexfleet runners register --abi arm64-v8a OUT
#
# This is a recipe for machines with the NDK: neither the NDK nor ORT's Android packages are
# reachable from the machines hexfleet's CI runs on, so CI builds the arm64 Linux runner instead
# (runner/build.sh --abi arm64-v8a) and runs it on emulated arm64 phones.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source_dir=$(dirname "$here")
root=$(dirname "$source_dir")
ndk="" aar="" qnn_sdk="" htp_arch=73 api=29
while [ $# -gt 0 ]; do
    case "$1" in
        --ndk) ndk=$2; shift 2 ;;
        --ort-aar) aar=$2; shift 2 ;;
        --qnn-sdk) qnn_sdk=$2; shift 2 ;;
        --htp-arch) htp_arch=$2; shift 2 ;;
        --api) api=$2; shift 2 ;;
        -*) echo "runner/android/build.sh: unknown option $1" >&2; exit 2 ;;
        *) break ;;
    esac
done
out=${1:-$root/build/runner-android-arm64-v8a}
die() { echo "runner/android/build.sh: $*" >&2; exit 1; }
[ -f "$ndk/build/cmake/android.toolchain.cmake" ] || die "--ndk: no build/cmake/android.toolchain.cmake in '$ndk'"
[ -f "$aar" ] || die "--ort-aar: no such file '$aar'"
[ "$api" -ge 29 ] || die "--api must be 29 or higher (Android 10)"
case "$htp_arch" in 68|69|73|75|79|81) ;; *) die "--htp-arch: one of 68 69 73 75 79 81" ;; esac

mkdir -p "$out/ort"
unzip -o -q -j "$aar" jni/arm64-v8a/libonnxruntime.so -d "$out/ort"
cmake -S "$source_dir" -B "$out/cmake" \
    -DCMAKE_TOOLCHAIN_FILE="$ndk/build/cmake/android.toolchain.cmake" \
    -DANDROID_ABI=arm64-v8a -DANDROID_PLATFORM="android-$api" -DANDROID_STL=c++_static \
    -DCMAKE_BUILD_TYPE=Release -DORT_LIBRARY="$out/ort/libonnxruntime.so" \
    -DNLOHMANN_JSON_INCLUDE_DIR=/usr/include -DSTB_INCLUDE_DIR=/usr/include >/dev/null
cmake --build "$out/cmake" >&2
cp "$out/cmake/hexfleet-runner" "$out/ort/libonnxruntime.so" "$out/"
if [ -n "$qnn_sdk" ]; then
    for lib in "lib/aarch64-android/libQnnHtp.so" "lib/aarch64-android/libQnnSystem.so" \
               "lib/aarch64-android/libQnnHtpV${htp_arch}Stub.so" \
               "lib/hexagon-v${htp_arch}/unsigned/libQnnHtpV${htp_arch}Skel.so"; do
        [ -f "$qnn_sdk/$lib" ] || die "--qnn-sdk: missing $lib"
        cp "$qnn_sdk/$lib" "$out/"
    done
fi
rm -rf "$out/cmake" "$out/ort"
echo "$out"
