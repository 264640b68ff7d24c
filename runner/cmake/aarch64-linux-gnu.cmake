# Cross-compile the runner for arm64 Linux (glibc) with Debian's g++-aarch64-linux-gnu.
# The result runs under qemu-user on an x86-64 host (an emulated arm64-v8a phone); a real
# Android phone needs the NDK build instead (runner/android/README.md).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
# The header-only libraries (nlohmann-json, stb) are architecture-independent: take the host's.
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
