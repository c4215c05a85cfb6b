#!/usr/bin/env bash
# Install Debian's chromium for the browser tests when it is missing and we can (root + apt).
# Playwright's own browser download does not work on our machines; the tests use /usr/bin/chromium.
# If it cannot be installed, the browser tests skip and say why; nothing else depends on it.
set -u
[ -x /usr/bin/chromium ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing Debian chromium for the browser tests..."
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/tmp/mi-catalog-chromium.log 2>&1 \
    || echo "warning: chromium could not be installed (see /tmp/mi-catalog-chromium.log); browser tests will skip"
else
  echo "warning: /usr/bin/chromium missing and not root: browser tests will skip (apt-get install chromium)"
fi
exit 0
