#!/usr/bin/env bash
# Refresh the vendored GOV.UK Frontend files in api/web/static/ (run at development time only: nothing
# runs node at run time). The CSS is compiled from the package's Sass with Arial and no font-face, since
# the GDS Transport font may only be used on service.gov.uk domains; its asset URLs point at /assets/.
#
#   scripts/refresh-govuk-frontend.sh            # the pinned version below
#   GOVUK_FRONTEND_VERSION=6.3.0 scripts/refresh-govuk-frontend.sh
#
# Keep the version in step with the govuk-frontend-jinja pin in pyproject.toml (4.1.0 targets 6.3.0).
set -euo pipefail
VERSION="${GOVUK_FRONTEND_VERSION:-6.3.0}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
STATIC="$ROOT/api/web/static"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

cd "$WORK"
npm init -y >/dev/null
npm install --no-audit --no-fund --ignore-scripts "govuk-frontend@$VERSION" sass@1 >/dev/null
cat > app.scss <<'SCSS'
@use "pkg:govuk-frontend" with ($govuk-include-default-font-face: false, $govuk-font-family: (Arial, sans-serif), $govuk-assets-path: "/assets/");
SCSS
npx sass --pkg-importer=node --style=compressed --no-source-map app.scss govuk-frontend.min.css

DIST="node_modules/govuk-frontend/dist/govuk"
mkdir -p "$STATIC/images"
cp govuk-frontend.min.css "$STATIC/govuk-frontend.min.css"
# the source map is not vendored, so its comment would only make browsers ask for a missing file
sed -e 's|//# sourceMappingURL=.*$||' "$DIST/govuk-frontend.min.js" > "$STATIC/govuk-frontend.min.js"
cp "$DIST"/assets/images/* "$STATIC/images/"
cp "$DIST/assets/manifest.json" "$STATIC/manifest.json"
echo "$VERSION" > "$STATIC/GOVUK_FRONTEND_VERSION"
echo "GOV.UK Frontend $VERSION vendored into $STATIC"
