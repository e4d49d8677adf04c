#!/usr/bin/env bash
# Render every Mermaid block of architecture_diagram.md to docs/diagrams/diagram-N.png.
# Installs what it needs when missing: Debian's chromium, and the pinned Mermaid CLI from npm
# into .tools/mermaid (git-ignored). Fails if any diagram does not render.
set -euo pipefail
cd "$(dirname "$0")/.."
MMDC_VERSION=12.2.0
TOOLS=.tools/mermaid
OUT=docs/diagrams

if [ ! -x /usr/bin/chromium ]; then
  echo "installing chromium (Debian package)..." >&2
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null
  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null; fi
fi
if [ ! -x "$TOOLS/node_modules/.bin/mmdc" ]; then
  echo "installing @mermaid-js/mermaid-cli@$MMDC_VERSION into $TOOLS..." >&2
  mkdir -p "$TOOLS"
  PUPPETEER_SKIP_DOWNLOAD=1 npm install --prefix "$TOOLS" --no-audit --no-fund --silent \
    "@mermaid-js/mermaid-cli@$MMDC_VERSION" >/dev/null
fi
cat > "$TOOLS/puppeteer.json" <<'JSON'
{"executablePath": "/usr/bin/chromium",
 "args": ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
          "--disable-component-update", "--disable-sync", "--no-first-run"]}
JSON

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
awk -v dir="$work" '
  /^```mermaid/ {n++; file = sprintf("%s/diagram-%d.mmd", dir, n); inside = 1; next}
  /^```/ && inside {inside = 0; close(file); next}
  inside {print > file}
' architecture_diagram.md
mkdir -p "$OUT"
count=0
for mmd in "$work"/diagram-*.mmd; do
  name=$(basename "$mmd" .mmd)
  "$TOOLS/node_modules/.bin/mmdc" -q -p "$TOOLS/puppeteer.json" -b white -s 2 \
    -i "$mmd" -o "$work/$name.png"
  mv "$work/$name.png" "$OUT/$name.png"
  count=$((count + 1))
  echo "rendered $OUT/$name.png"
done
[ "$count" -gt 0 ] || { echo "error: no mermaid blocks found in architecture_diagram.md" >&2; exit 1; }
