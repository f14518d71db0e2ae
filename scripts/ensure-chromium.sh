#!/usr/bin/env bash
# Makes sure Debian's Chromium is at /usr/bin/chromium for the browser tests
# (tests/js/browser.test.mjs drives it with playwright-core; no browser is downloaded).
# Installs it with apt-get when missing; fails clearly otherwise: tests never skip silently.
set -euo pipefail

if [ "${DIARY_TEST_BROWSER:-1}" = "0" ]; then
  echo "DIARY_TEST_BROWSER=0: not installing Chromium; the browser tests will be reported as skipped" >&2
  exit 0
fi

if command -v chromium >/dev/null 2>&1 && [ -x /usr/bin/chromium ]; then exit 0; fi
echo "chromium is missing: installing Debian's chromium package for the browser tests ..." >&2
if ! (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium) >&2; then
  echo "error: could not install chromium (apt-get install -y chromium failed; run it as root)." >&2
  echo "       The browser tests need Debian's Chromium at /usr/bin/chromium." >&2
  exit 1
fi
if [ ! -x /usr/bin/chromium ]; then
  echo "error: chromium was installed but /usr/bin/chromium is not there" >&2
  exit 1
fi
