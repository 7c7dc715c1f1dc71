# Sourced by scripts/demo and scripts/test: make $VENV (default .venv) and install the project
# into it with the extra named by $1, plus any requirements in $PINS (e.g. an older redis-py).
# Re-installs only when pyproject.toml or $PINS changed, so the second run starts at once.
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
PINS=${PINS:-}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "luaimport needs Python 3.11 or newer as \$PYTHON or python3" >&2
    exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.luaimport-$1-$( (cat pyproject.toml; echo "$PINS") | sha1sum | cut -c1-12)"
if [ ! -e "$stamp" ]; then
    # shellcheck disable=SC2086  # PINS is a list of requirements
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[$1]" $PINS
    touch "$stamp"
fi
