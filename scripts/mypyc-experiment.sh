#!/bin/bash
# Measurement only, not the build (BENCHMARKS.md, "Issue 24"): a copy of the tracked tree in DEST with the hot
# modules compiled by mypyc (C extensions beside the .py files, which they shadow), so the benchmark can run the
# compiled bridge beside the plain one:
#   bash scripts/mypyc-experiment.sh /tmp/bridge-mypyc
#   cd /tmp/bridge-mypyc && PYTHONPATH=$PWD BRIDGE_SHARED_DIR=<shared> <repo>/.venv/bin/python -m bench.run ...
# Needs `make install` (mypy brings mypyc) and a C compiler. About 3 minutes on 2 cores.
set -euo pipefail
DEST=${1:?usage: mypyc-experiment.sh DEST}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY="$ROOT/.venv/bin/python"
MODULES=(
  bridge/jsonutil.py bridge/envelope.py
  bridge/normalize/azure.py bridge/normalize/cloudevents.py bridge/normalize/dispatch.py bridge/normalize/errors.py
  bridge/normalize/fields.py bridge/normalize/mapping.py bridge/normalize/sagemaker.py bridge/normalize/sequence.py
  bridge/normalize/timeutil.py
  bridge/pipeline/records.py bridge/pipeline/reorder.py bridge/pipeline/admission.py bridge/pipeline/settlement.py
  bridge/pipeline/router.py bridge/sinks/encoding.py
  bridge/filters/eventbridge.py bridge/filters/eventbridge_ops.py bridge/filters/eventgrid.py
)  # bridge/filters/base.py is left out: mypyc refuses its sentinel's class-level instance attribute
rm -rf "$DEST"
mkdir -p "$DEST/.tools"
git -C "$ROOT" ls-files -z | (cd "$ROOT" && tar --null -cf - -T -) | tar -xf - -C "$DEST"
ln -s "$ROOT/.tools/kafka" "$DEST/.tools/kafka"
cd "$DEST"
mv pyproject.toml pyproject.toml.off  # setuptools would validate [project] and refuse its license field here
printf '[mypy]\nstrict = True\npython_version = 3.11\nignore_missing_imports = True\nwarn_unused_ignores = False\nplugins = pydantic.mypy\n' > mypy.ini
cat > build_mypyc.py <<'PY'
import sys

from mypyc.build import mypycify
from setuptools import setup

modules = sys.argv[3:]
del sys.argv[3:]  # setup() reads the command (build_ext --inplace) from sys.argv
setup(name="bridge-mypyc-experiment", packages=[], ext_modules=mypycify(modules, opt_level="3"))
PY
"$PY" build_mypyc.py build_ext --inplace "${MODULES[@]}"
echo "compiled: $(find bridge -name '*.so' | wc -l) modules in $DEST"
