#!/usr/bin/env bash
# Pull template improvements into this project with `copier update`, then
# report every conflict: Copier exits 0 even when it leaves some behind
# (inline <<<<<<< markers, or .rej files with --conflict rej). This script
# lists them and exits 1 until they are resolved.
#
#   scripts/update.sh                   # to the latest release
#   scripts/update.sh --vcs-ref v1.4.0  # or to the given one
#   scripts/update.sh --defaults        # keep the answers, ask nothing
#
# Extra arguments go to `copier update`. All above that command keeps its
# size to the byte (see the note below). Not rendered (bash's ${#array[@]} would
# open a Jinja comment).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

die() {
    echo "update: $*" >&2
    exit 2
}

command -v copier >/dev/null 2>&1 \
    || die "copier not found: pip install copier copier-template-extensions jsonschema"
git rev-parse --is-inside-work-tree >/dev/null 2>&1 \
    || die "not a git repository: copier update needs one (git init && git add -A && git commit -m initial)"
[ -z "$(git status --porcelain)" ] \
    || die "uncommitted changes: commit them or stash them first, so the update can be reviewed"
err=$(mktemp); trap 'rm -f "$err"' EXIT
status=0; copier update --trust "$@" 2>"$err" || status=$?
# copier update may just have replaced this very file, and bash reads on from the
# same byte offset: a line above that changed size would make a user's update from
# an older release run the middle of some other line (tests/test_upgrade.py).
# Run so by an older release's script, this part follows a copier line that
# set neither variable below and stopped the script if copier failed.

if [ -n "${err:-}" ]; then
    if [ "${status:-0}" -ne 0 ] && grep -q '^Traceback (most recent call last):' "$err"; then
        # Copier's messages, then its error in one line instead of a Python traceback.
        sed '/^Traceback (most recent call last):/,$d' "$err" >&2
        reason=$(awk 'NF && !/^[[:space:]]/ { last = $0 } END { print last }' "$err")
        echo "update: copier update failed: $reason" >&2
        exit "$status"
    fi
    cat "$err" >&2
    if [ "${status:-0}" -ne 0 ]; then
        echo "update: copier update failed (exit status $status)" >&2
        exit "$status"
    fi
fi

conflicts=()
while IFS= read -r file; do
    conflicts+=("$file (inline conflict markers)")
done < <(git grep -l --untracked -E '^(<<<<<<<|>>>>>>>)( |$)' -- . ':(exclude)*.rej' || true)
while IFS= read -r file; do
    conflicts+=("$file")
done < <(git ls-files --others --exclude-standard -- '*.rej')

if [ "${#conflicts[@]}" -gt 0 ]; then
    echo "update: ${#conflicts[@]} conflict(s) to resolve, then commit:" >&2
    printf '  %s\n' "${conflicts[@]}" >&2
    exit 1
fi
echo "update: no conflicts; review the changes with 'git diff' and commit them"
