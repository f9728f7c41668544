#!/usr/bin/env bash
# `make gpu-check`: the prepared GPU check, for the GPU machine that the `device` tool lends (no network there)
# and for any machine with the project's .venv. From the repository root:
#
#   bash benchmarks/gpu_check.sh [gpu_check.py options]     # e.g. --cpu-smoke
#
# 1. makes fastreid, yacs, termcolor and faiss importable from the carried wheels (.gpu-wheels/, made by
#    `make gpu-wheels`) when they are not already;
# 2. installs this project editable, without dependencies or network, when it is not installed (projects such
#    as dgnet are found through its entry points, so the package must be installed, not only on the path);
# 3. runs benchmarks/gpu_check.py --out "$OUT" (default logs/gpu_check), its output also in gpu_check.log there.
#
# Python: $PYTHON, else .venv/bin/python when there, else python3 (the GPU machine's, which holds torch).
# Nothing here creates a virtual environment. Where the environment cannot be written, the packages go to
# /tmp/gpu_check_site on PYTHONPATH instead.
set -uo pipefail
cd "$(dirname "$0")/.."

OUT_DIR=${OUT:-logs/gpu_check}
WHEELS=${GPU_WHEELS:-.gpu-wheels}
export GPU_CHECK_SITE=${GPU_CHECK_SITE:-/tmp/gpu_check_site}
SITE=$GPU_CHECK_SITE
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON; elif [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
export PYTHONUNBUFFERED=1
export PIP_ROOT_USER_ACTION=ignore  # commands run as root there; older pips ignore the variable

# fastreid-gan is installed when its dgnet project is registered and imports from this checkout (or $SITE).
# fastreid_gan itself would import from the current folder anyway: dgnet (projects/DGNet/dgnet) tells.
CHECK_PROJECT='
import os
import dgnet, fastreid_gan
from importlib.metadata import entry_points
assert any(e.name == "dgnet" for e in entry_points(group="fastreid_gan.projects")), "no fastreid_gan.projects entry point"
where = os.path.realpath(os.path.dirname(dgnet.__file__))
site = os.path.realpath(os.environ["GPU_CHECK_SITE"])
assert where == os.path.realpath("projects/DGNet/dgnet") or where.startswith(site + os.sep), f"dgnet from {where}"
'

pip_install() {
    "$PY" -m pip install -q --no-index --no-deps --no-cache-dir --disable-pip-version-check "$@"
}

main() {
    echo "gpu_check.sh: $("$PY" -c 'import sys; print(sys.executable, sys.version.split()[0])') in $(pwd)"
    if ! "$PY" -c "import fastreid, yacs, termcolor, faiss" 2>/dev/null; then
        if ! ls "$WHEELS"/*.whl >/dev/null 2>&1; then
            echo "gpu_check.sh: fastreid, yacs, termcolor or faiss is missing for $PY and $WHEELS/ holds no wheels:" \
                 "run 'make gpu-wheels' on a machine that reaches PyPI and carry $WHEELS" >&2
            return 1
        fi
        echo "installing $(cd "$WHEELS" && echo *.whl)"
        if ! pip_install --no-compile "$WHEELS"/*.whl; then
            echo "gpu_check.sh: cannot install into $PY's environment: into $SITE (PYTHONPATH) instead"
            pip_install --no-compile --upgrade --target "$SITE" "$WHEELS"/*.whl || return 1
            export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
        fi
        "$PY" -c "import fastreid, yacs, termcolor, faiss" || return 1
    fi
    if ! "$PY" -c "$CHECK_PROJECT" 2>/dev/null; then
        echo "installing fastreid-gan (editable, no dependencies, offline)"
        # with the machine's setuptools; else with the carried one (pyproject.toml needs setuptools>=77) in pip's
        # isolated build environment; else, where the environment cannot be written, a plain install into $SITE
        # (an editable one cannot go to a side folder; a plain one carries the same code and entry points)
        if ! pip_install --no-build-isolation -e .; then
            echo "gpu_check.sh: editable install with $PY's setuptools failed: with $WHEELS/build's"
            if ! pip_install --find-links "$WHEELS/build" -e .; then
                echo "gpu_check.sh: editable install failed: a plain install into $SITE instead"
                pip_install --find-links "$WHEELS/build" --upgrade --target "$SITE" . || return 1
                export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
            fi
        fi
        "$PY" -c "$CHECK_PROJECT" || return 1
    fi
    "$PY" benchmarks/gpu_check.py --out "$OUT_DIR" "$@"
}

mkdir -p "$OUT_DIR"
main "$@" 2>&1 | tee "$OUT_DIR/gpu_check.log"
exit "${PIPESTATUS[0]}"
