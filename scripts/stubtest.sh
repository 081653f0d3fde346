#!/usr/bin/env bash
# mypy.stubtest of the installed fastclip: every compiled module's .pyi stub
# against the runtime module. Run it with the Python of an environment where
# fastclip is installed (a wheel or `pip install .`, which generates
# _build_info.py); mypy is installed there when missing.
#
#   scripts/stubtest.sh [python]      (default: python3)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${1:-python3}
case "$PY" in */*) PY=$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY") ;; esac
"$PY" -c "import mypy" 2>/dev/null || "$PY" -m pip install --quiet "mypy>=1.10"
# From a neutral directory, so that the installed package is the one checked.
cd "$(mktemp -d)"
"$PY" -c "import fastclip, sys; print('stubtest of', fastclip.__file__)"
"$PY" - <<'PYEOF'
import importlib, pkgutil, sys, os
import fastclip
missing = []
for m in pkgutil.iter_modules(fastclip.__path__):
    if m.name == "libfastclip_kernels":  # the C kernels' shared library, not a module
        continue
    mod = importlib.import_module(f"fastclip.{m.name}")
    f = getattr(mod, "__file__", "") or ""
    dirs = [os.path.dirname(f), *fastclip.__path__]  # (editable installs split them)
    if f.endswith((".so", ".pyd")) and not any(
        os.path.exists(os.path.join(d, m.name + ".pyi")) for d in dirs
    ):
        missing.append(m.name)
if missing:
    sys.exit(f"compiled modules without a .pyi stub: {missing}")
PYEOF
"$PY" -m mypy.stubtest fastclip \
  --mypy-config-file "$ROOT/pyproject.toml" \
  --allowlist "$ROOT/scripts/stubtest-allowlist.txt"
