#!/usr/bin/env bash
# Run the README's two commands (the quick start, then the tests) exactly as README.md writes
# them, each in a new shell, in a fresh clone in a temporary folder: a fresh virtual environment,
# nothing from the calling shell's venv. Fails if a command fails, if the quick start's outputs
# are missing, or if it left files git would see.
#
#   bash scripts/check_readme.sh              # a clone of the last commit
#   bash scripts/check_readme.sh --worktree   # the files git would commit now (uncommitted too)
#
# Offline, export VAEEDOF_WEIGHTS_DIR first (the README's offline route for the TAEF2 weights).
# PYTEST_ADDOPTS reaches the test command (e.g. PYTEST_ADDOPTS="tests/test_cli.py" for a part).
# KEEP=1 keeps the temporary folder.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/vaeedof-readme.XXXXXX")
trap '[ "${KEEP:-0}" = 1 ] && echo "kept $tmp" || rm -rf "$tmp"' EXIT
clone="$tmp/napari-vaeedof"

if [ "${1:-}" = "--worktree" ]; then
  mkdir -p "$clone"
  (cd "$repo" && git ls-files -z --cached --others --exclude-standard \
     | while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done \
     | xargs -0 cp --parents -t "$clone")
  (cd "$clone" && git init -q && git add -A \
     && git -c user.name=check -c user.email=check@localhost commit -qm "working tree")
else
  git clone -q "$repo" "$clone"
fi

# The README's commands: the ```bash blocks of its "Quick start" section, one line each.
mapfile -t commands < <(python3 - "$clone/README.md" <<'PY'
import re
import sys

text = open(sys.argv[1], encoding="utf-8").read()
section = text.split("\n## Quick start", 1)[1].split("\n## ", 1)[0]
for block in re.findall(r"```bash\n(.*?)```", section, re.S):
    lines = [line for line in block.strip().splitlines() if line.strip()]
    if len(lines) != 1:
        sys.exit(f"a README command spans {len(lines)} lines; keep each on one line")
    print(lines[0])
PY
)
[ "${#commands[@]}" -eq 2 ] || { echo "expected 2 commands in the quick start, found ${#commands[@]}"; exit 1; }

# A shell as on a fresh machine: no active venv, no PYTHONPATH.
path=$(printf '%s' "$PATH" | tr ':' '\n' | grep -v "^${VIRTUAL_ENV:-/nonexistent}/" | paste -sd: -)
cd "$clone"
for i in 0 1; do
  echo "== README command $((i + 1)) (in $clone):"
  echo "${commands[$i]}"
  start=$SECONDS
  env -u VIRTUAL_ENV -u PYTHONPATH PATH="$path" bash -c "${commands[$i]}"
  echo "== README command $((i + 1)) succeeded in $((SECONDS - start)) s"
done

for f in out/sample_fused.tif out/sample_error.tif; do
  [ -s "$f" ] || { echo "the quick start did not write $f"; exit 1; }
done
left=$(git status --porcelain)
[ -z "$left" ] || { echo "the commands left files git sees:"; echo "$left"; exit 1; }
echo "== the README's two commands work as written (outputs in out/, nothing left for git)"
