#!/usr/bin/env bash
# Render the HTML report with headless Chromium into a PNG, trimmed to the page's height, so
# anyone can see that it renders. Installs Debian's chromium package when it is missing.
#   scripts/screenshot_report.sh [REPORT_HTML] [OUT_PNG]   (default: reports/report.html -> reports/report.png)
set -euo pipefail
cd "$(dirname "$0")/.."
html=${1:-${REPORTS_DIR:-reports}/report.html}
out=${2:-${html%.html}.png}
[ -f "$html" ] || { echo "error: $html not found: run make report first" >&2; exit 1; }
if ! command -v chromium >/dev/null; then
  echo "installing chromium with apt-get (about 25 s)" >&2
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq && $sudo apt-get install -y -qq chromium >/dev/null
fi
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
# A tall window, then the empty part below the page is cut off. The networking flags keep
# Chromium from calling hosts it cannot reach; the report itself references nothing.
chromium --headless --no-sandbox --disable-gpu --disable-background-networking \
  --disable-component-update --disable-sync --no-first-run --hide-scrollbars \
  --user-data-dir="$profile" --window-size=1280,6000 \
  --screenshot="$(realpath -m "$out")" "file://$(realpath "$html")" >/dev/null 2>&1
.venv/bin/python - "$out" <<'PY'
import sys
import matplotlib.image as mpimg
import numpy as np

path = sys.argv[1]
image = mpimg.imread(path)
background = image[-1, :, :3]
rows = np.where(np.abs(image[:, :, :3] - background).max(axis=(1, 2)) > 0.01)[0]
bottom = min(image.shape[0], int(rows[-1]) + 24) if rows.size else image.shape[0]
mpimg.imsave(path, image[:bottom])
print(f"screenshot: {path} ({image.shape[1]}x{bottom} px)")
PY
