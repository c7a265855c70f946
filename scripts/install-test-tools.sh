#!/usr/bin/env bash
# Installs the Debian packages the test suite drives as real peers (sipp, Chromium) and the demo
# line's speech synthesizer (espeak-ng), when missing.
# As root it installs them; otherwise it names exactly what to install and fails in CI.
set -euo pipefail

declare -A package_of=([sipp]=sip-tester [chromium]=chromium [espeak-ng]=espeak-ng)
missing=()
for tool in sipp chromium espeak-ng; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("${package_of[$tool]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing test tools: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    exit 0
fi

echo "the test suite needs: sudo apt-get install ${missing[*]}" >&2
if [ "${CI:-}" = "true" ]; then
    exit 1
fi
echo "(tests that need them are skipped outside CI)" >&2
