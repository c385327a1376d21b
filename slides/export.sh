#!/usr/bin/env bash
# Exports every deck of slides/ to a self-contained HTML file, headlessly, and fails if any
# export fails.
#
#   bash slides/export.sh                 # into target/slides-html/
#   bash slides/export.sh /tmp/workshop   # anywhere else
#
# The page size comes from `export.dimensions` in slides/config.yaml, so no terminal is needed.
# It also writes index.html, the decks in presentation order. Then, where python3 is found, it
# checks headlessly that every slide fits a terminal of that same size (slides/check-fit.py):
# presenterm validates overflows only when presenting, never when exporting.
#
# Needs presenterm (tested with 0.16.1): cargo install presenterm --locked
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-target/slides-html}
config=slides/config.yaml

if ! command -v presenterm >/dev/null; then
    echo "export.sh: presenterm is not installed: cargo install presenterm --locked" >&2
    exit 1
fi
echo "export.sh: $(presenterm --version), config $config, into $out/"
mkdir -p "$out"

# Presentation order: the opening, the steps by number, the closing.
decks=(slides/opening.md)
for deck in slides/step*.md; do
    decks+=("$deck")
done
decks+=(slides/stopping.md slides/closing.md)
for deck in slides/*.md; do
    case " ${decks[*]} " in
        *" $deck "*) ;;
        *) decks+=("$deck") ;;
    esac
done

failed=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for deck in "${decks[@]}"; do
    name=$(basename "$deck" .md)
    html="$out/$name.html"
    rm -f "$html"
    # presenterm prints its progress (and a terminal query or two) on stdout: kept for errors.
    if presenterm --config-file "$config" --export-html --output "$html" "$deck" >"$log" 2>&1 \
        && [ -s "$html" ]; then
        echo "  exported $deck -> $html"
    else
        echo "  FAILED   $deck" >&2
        sed 's/\x1b\[[0-9;?]*[a-zA-Z]//g; s/\x1b_[^\x1b]*\x1b\\//g' "$log" >&2
        failed=$((failed + 1))
    fi
done

{
    echo '<!DOCTYPE html>'
    echo '<html><head><meta charset="utf-8"><title>The async server workbook: slides</title></head>'
    echo '<body><h1>The async server workbook: slides</h1><ol>'
    for deck in "${decks[@]}"; do
        name=$(basename "$deck" .md)
        echo "<li><a href=\"$name.html\">$name</a></li>"
    done
    echo '</ol></body></html>'
} >"$out/index.html"

# The size every slide is laid out for: the export dimensions of the config.
columns=$(awk '/^export:/ { e = 1 } e && $1 == "columns:" { print $2; exit }' "$config")
rows=$(awk '/^export:/ { e = 1 } e && $1 == "rows:" { print $2; exit }' "$config")
if command -v python3 >/dev/null; then
    if ! python3 slides/check-fit.py "$columns" "$rows" "${decks[@]}"; then
        failed=$((failed + 1))
    fi
else
    echo "export.sh: no python3: not checking that every slide fits ${columns}x${rows}" >&2
fi

if [ "$failed" -ne 0 ]; then
    echo "export.sh: $failed failure(s)" >&2
    exit 1
fi
echo "export.sh: ${#decks[@]} decks exported to $out/ (open $out/index.html)"
