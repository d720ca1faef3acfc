#!/usr/bin/env bash
# Prepares a Debian 12 machine that has Swift for building LeanDiffusion: installs the C libraries the package
# links (oneDNN, libpng, libjpeg-turbo, zlib) from Debian's archive when they are missing, saying which, and checks
# that Swift 6 is reachable. Run by the README's two commands and by .ci/run; a second run installs nothing.
#   --test    also what the tests use: chromium (the web page is tested in headless Chromium)
#   --check   only report what is missing (exit 1 if anything is), install nothing
set -euo pipefail

packages=(libdnnl-dev libpng-dev libjpeg62-turbo-dev zlib1g-dev)
check_only=0
for arg in "$@"; do
    case "$arg" in
        --check) check_only=1 ;;
        --test) packages+=(chromium) ;;
        *) echo "setup: unknown option $arg (--test, --check)" >&2; exit 64 ;;
    esac
done

if ! command -v swift >/dev/null 2>&1; then
    if [ -x /opt/swift/usr/bin/swift ]; then
        echo "setup: swift is at /opt/swift/usr/bin but not on PATH; run: export PATH=/opt/swift/usr/bin:\$PATH" >&2
    else
        echo "setup: Swift 6 not found; install it from swift.org (the README's commands expect swift on PATH)" >&2
    fi
    exit 1
fi

if ! command -v dpkg >/dev/null 2>&1; then
    echo "setup: no dpkg here; install oneDNN, libpng, libjpeg and zlib development files by hand (${packages[*]} on Debian)" >&2
    exit 0
fi

missing=()
for pkg in "${packages[@]}"; do
    # "deinstall ok config-files" (removed, configuration kept) is not installed.
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed$" || missing+=("$pkg")
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if [ $check_only -eq 1 ]; then
    echo "setup: missing Debian packages: ${missing[*]}" >&2
    exit 1
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        sudo=(sudo)
    else
        echo "setup: missing ${missing[*]}; run as root: apt-get install ${missing[*]}" >&2
        exit 1
    fi
fi
echo "setup: installing from Debian's archive: ${missing[*]}"
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: installed ${missing[*]}"
