#!/usr/bin/env bash
# Checks every coding exercise both ways, on a scratch copy of this tree: its test fails on
# the shipped code (with a "still missing:" message, not a compile error), and passes once its
# reference solution is applied.
#
#   bash tests/exercises/check.sh              # every exercise
#   bash tests/exercises/check.sh step03       # the exercises of the steps named
#
# An exercise is a patch, slides/solutions/stepNN-NAME.patch, and a test, the function
# NAME (dashes as underscores) in steps/stepNN-*/tests/exercise.rs, #[ignore]d so that
# `cargo test --workspace` stays green. The scratch copy and its build directory (one for
# every exercise, so that each rebuilds only its own step) are under target/exercises/, or
# under $EXERCISES_DIR when set.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
own_target=${CARGO_TARGET_DIR:-$root/target}
work=${EXERCISES_DIR:-$own_target/exercises}
scratch=$work/tree
export CARGO_TARGET_DIR=$work/target
# A first run seeds the scratch build directory with this tree's own debug build (as
# `cargo test --workspace` left it): the registry crates' artifacts do not depend on where the
# workspace is, so cargo takes them as they are and builds only the workspace's own crates.
if [ ! -d "$CARGO_TARGET_DIR/debug" ] && [ -d "$own_target/debug/deps" ]; then
    mkdir -p "$CARGO_TARGET_DIR/debug"
    cp -a "$own_target/debug/deps" "$own_target/debug/build" "$own_target/debug/.fingerprint" \
        "$CARGO_TARGET_DIR/debug/"
fi
# The io_uring steps' exercises must run, never skip, wherever this runs.
export WORKBOOK_REQUIRE_IO_URING=1

started=$SECONDS
patches=()
for patch in "$root"/slides/solutions/step*.patch; do
    name=$(basename "$patch" .patch)
    if [ $# -gt 0 ]; then
        wanted=false
        for step in "$@"; do [[ $name == "$step"-* ]] && wanted=true; done
        $wanted || continue
    fi
    patches+=("$patch")
done
if [ ${#patches[@]} -eq 0 ]; then
    echo "no exercise matches: slides/solutions/ has no step*-*.patch for ${*:-any step}" >&2
    exit 1
fi

# The scratch copy: the files git knows here (committed or not), as a repository of its own
# so that every exercise starts again from exactly the shipped tree.
rm -rf "$scratch"
mkdir -p "$scratch"
(cd "$root" && git ls-files -z --cached --others --exclude-standard) |
    (cd "$root" && xargs -0 tar -cf - --) | tar -xmf - -C "$scratch"
git -C "$scratch" init -q
git -C "$scratch" add -A
git -C "$scratch" -c user.name=check -c user.email=check@localhost commit -q -m shipped

failures=0
log=$work/last.log
run() { (cd "$scratch" && cargo test -q -p "$step" --test exercise -- --ignored --exact "$test") >"$log" 2>&1; }
for patch in "${patches[@]}"; do
    name=$(basename "$patch" .patch)
    step=${name%%-*}
    test=${name#*-}
    test=${test//-/_}
    if grep -q '^+++ b/.*/tests/' "$patch"; then
        echo "FAIL $name: the solution changes a test; it may change only the step's code" >&2
        failures=$((failures + 1))
        continue
    fi
    git -C "$scratch" checkout -q -- . && git -C "$scratch" clean -qfd

    # Shipped: the test must compile, run, and fail saying what is missing.
    if run; then
        echo "FAIL $name: its test passes on the shipped code" >&2
        failures=$((failures + 1))
        continue
    fi
    if ! grep -q '^test result: FAILED. 0 passed; 1 failed' "$log" || ! grep -q 'still missing:' "$log"; then
        echo "FAIL $name: on the shipped code the test did not run and fail with 'still missing:'" >&2
        tail -n 30 "$log" >&2
        failures=$((failures + 1))
        continue
    fi
    missing=$(grep -m1 -A1 'still missing:' "$log" | tr '\n' ' ' | sed 's/  */ /g')

    # Solved: the patch applies and the test passes.
    if ! git -C "$scratch" apply "$patch"; then
        echo "FAIL $name: the solution does not apply to the shipped code" >&2
        failures=$((failures + 1))
        continue
    fi
    if ! run || ! grep -q '^test result: ok. 1 passed' "$log"; then
        echo "FAIL $name: its test does not pass with the solution applied" >&2
        tail -n 30 "$log" >&2
        failures=$((failures + 1))
        continue
    fi
    # An attendee then runs the step's whole suite: the solution must not break its build.
    if ! (cd "$scratch" && cargo test -q -p "$step" --no-run) >"$log" 2>&1; then
        echo "FAIL $name: with the solution applied, the step's other tests do not build" >&2
        tail -n 30 "$log" >&2
        failures=$((failures + 1))
        continue
    fi
    echo "ok   $name  (shipped: ${missing:0:110})"
done

git -C "$scratch" checkout -q -- . && git -C "$scratch" clean -qfd
count=${#patches[@]}
elapsed=$((SECONDS - started))
if [ "$failures" -gt 0 ]; then
    echo "$failures of $count exercises failed the check (${elapsed} s)" >&2
    exit 1
fi
echo "$count exercises: each fails without its solution and passes with it (${elapsed} s)"
