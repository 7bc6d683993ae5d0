#!/usr/bin/env bash
# Pull template improvements into this project with `copier update`, then
# report every conflict. Copier exits 0 even when it leaves conflicts behind
# (inline <<<<<<< markers, or .rej files with --conflict rej): this script
# lists them and exits 1 until they are resolved.
#
#   scripts/update.sh                     # update to the template's latest release
#   scripts/update.sh --vcs-ref v1.4.0    # or to a given one
#   scripts/update.sh --defaults          # keep every previous answer, ask nothing
#
# Extra arguments go to `copier update`. All above that command keeps
# its size to the byte; see the comment just under it.
# (Copied verbatim, not rendered: bash's ${#array[@]} would open a Jinja comment.)
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
    || die "uncommitted changes: commit or stash them first, so the update can be reviewed and undone"

copier update --trust "$@"
# copier update may just have replaced this very file, and bash reads on from the
# same byte offset: a line above that changed size would make a user's update from
# an older release run the middle of some other line (tests/test_upgrade.py).

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
