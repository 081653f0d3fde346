#!/usr/bin/env bash
# Build fastclip with AddressSanitizer + UndefinedBehaviorSanitizer
# (-DFASTCLIP_SANITIZE=ON) into a separate virtual environment and run the
# whole test suite under it. Any ASan report or UBSan finding fails the run.
# The build has no AVX-512 clones (-DFASTCLIP_AVX512=OFF), so that on an
# AVX-512 machine this run tests the AVX2 clones the main suite does not reach
# (the tests that compare the kernels with the NumPy twin bit for bit then cover
# both).
#
#   scripts/sanitize.sh [extra pytest arguments]
#
# Environment: SANITIZE_VENV (default build/sanitize-venv), PYTHON (python3),
# FASTCLIP_LEAK_CALLS (default here 10000: ASan makes every call slower, and
# its quarantine, not fastclip, dominates RSS; see tests/test_leaks.py).
# Needs gcc (or clang) with libasan/libubsan; GCC's are used for the preload.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PYTHON=${PYTHON:-python3}
VENV=${SANITIZE_VENV:-$ROOT/build/sanitize-venv}
export PIP_DISABLE_PIP_VERSION_CHECK=1
start=$(date +%s)

CC=${CC:-gcc}
libasan=$("$CC" -print-file-name=libasan.so)
if [ ! -e "$libasan" ]; then
  echo "sanitize.sh: $CC has no libasan.so (install GCC's sanitizer runtimes, e.g. libgcc-12-dev)" >&2
  exit 1
fi
libasan=$(readlink -f "$libasan")
# libstdc++ is preloaded too: ASan's __cxa_throw interceptor must find the real
# one at start-up, or the first C++ exception of a non-instrumented extension
# (matplotlib's ft2font, torch) fails an ASan CHECK and aborts the process.
libstdcxx=$(readlink -f "$("$CC" -print-file-name=libstdc++.so)")

# A venv that sees the machine's packages (numpy, pytest, ...); pip adds
# whatever is missing (build requirements, the [test] extra). The sanitized
# build is a regular (non-editable) install.
"$PYTHON" -m venv --system-site-packages "$VENV"
"$VENV/bin/python" -m pip install --quiet \
  "scikit-build-core>=0.10" "cython>=3.0.10" "numpy>=2.0"
"$VENV/bin/python" -m pip uninstall --quiet --yes fastclip 2>/dev/null || true
CC="$CC" "$VENV/bin/python" -m pip install --quiet --no-build-isolation \
  -Ccmake.define.FASTCLIP_SANITIZE=ON \
  -Ccmake.define.FASTCLIP_AVX512=OFF \
  -Ccmake.build-type=RelWithDebInfo \
  -Cbuild-dir="$ROOT/build/sanitize" \
  "$ROOT[test]"

# Run from a directory where the source tree's src/ is not importable.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$ROOT/tests" "$ROOT/examples" "$ROOT/docs" "$ROOT/README.md" "$ROOT/CHANGELOG.md" \
  "$ROOT/LICENSE" "$ROOT/pyproject.toml" "$work/"  # tests run the examples, README and docs

# The ASan runtime must be loaded before anything else in the process.
# CPython frees little at exit by design: no leak detection. UBSan findings
# abort (the build uses -fno-sanitize-recover=undefined as well).
export LD_PRELOAD="$libasan:$libstdcxx${LD_PRELOAD:+:$LD_PRELOAD}"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1:allocator_may_return_null=1"
export UBSAN_OPTIONS="halt_on_error=1:abort_on_error=1:print_stacktrace=1"
export PYTHONMALLOC=malloc     # every Python allocation goes through ASan
export FASTCLIP_LEAK_CALLS=${FASTCLIP_LEAK_CALLS:-10000}
export FASTCLIP_IMPLEMENTATION=c

cd "$work"
# The harness itself: a deliberate heap overflow must be caught and fail.
if "$VENV/bin/python" -c "
import ctypes
buf = ctypes.create_string_buffer(64)
ctypes.memmove(buf, b'x' * 200, 128)
" 2>"$work/selfcheck"; then
  echo "sanitize.sh: AddressSanitizer is not active (a heap overflow went unnoticed)" >&2
  exit 1
fi
grep -q "AddressSanitizer: heap-buffer-overflow" "$work/selfcheck" || {
  cat "$work/selfcheck" >&2; echo "sanitize.sh: unexpected self-check failure" >&2; exit 1; }
echo "sanitize.sh: AddressSanitizer self-check caught a deliberate overflow"
"$VENV/bin/python" - <<'EOF'
import fastclip, fastclip._build_info as b, os
assert b.sanitize, "fastclip was not built with FASTCLIP_SANITIZE=ON"
assert not fastclip.__file__.startswith(os.getcwd()), fastclip.__file__
print(f"sanitized fastclip from {os.path.dirname(fastclip.__file__)}")
EOF
"$VENV/bin/python" -m pytest -q -p no:cacheprovider tests "$@" 2>&1 | tee "$work/log"
status=${PIPESTATUS[0]}
if grep -qE "ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer" "$work/log"; then
  echo "sanitize.sh: sanitizer reports found" >&2
  status=1
fi
echo "sanitize.sh: exit $status in $(( $(date +%s) - start )) s"
exit "$status"
