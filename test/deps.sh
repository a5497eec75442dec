#!/usr/bin/env bash
# Installs the Debian packages Vula's tests need, when they are missing.
# As root it uses apt-get; otherwise it stops and names what to install.
set -euo pipefail

# command -> Debian package
declare -A need=(
  [softhsm2-util]=softhsm2
  [pkcs11-tool]=opensc
  [openssl]=openssl
  [curl]=curl
  [jq]=jq
  [redis-server]=redis-server
  [pg_ctl]=postgresql
  [chromium]=chromium
  [pdfsig]=poppler-utils
  [pdftoppm]=poppler-utils
  [pdffonts]=poppler-utils
  [pdftotext]=poppler-utils
  [gs]=ghostscript
  [qpdf]=qpdf
  [zbarimg]=zbar-tools
  [certutil]=libnss3-tools
  [vfychain]=libnss3-tools
  [modutil]=libnss3-tools
  [unzip]=unzip
  [zipinfo]=unzip
  [xmllint]=libxml2-utils
  [xmlsec1]=xmlsec1
  [node]=nodejs
  [npm]=npm
)

have() {
  command -v "$1" >/dev/null 2>&1 && return 0
  # Debian keeps the PostgreSQL server binaries off PATH.
  [ "$1" = pg_ctl ] && ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 && return 0
  return 1
}

missing=()
for cmd in "${!need[@]}"; do
  have "$cmd" || missing+=("${need[$cmd]}")
done
# The SoftHSM2 module itself (the tests load it with dlopen).
ls /usr/lib/softhsm/libsofthsm2.so >/dev/null 2>&1 || missing+=(softhsm2)

if [ ${#missing[@]} -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  if [ "$(id -u)" != 0 ]; then
    echo "test/deps.sh: missing Debian packages: ${missing[*]}" >&2
    echo "install them with: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
  echo "test/deps.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The ID card test (test/card_test.go) has Chromium pick the test card's certificate without a
# dialog: a managed policy that auto-selects, for 127.0.0.1 only, a certificate of the test
# card CA. Nothing else is affected.
policy=/etc/chromium/policies/managed/vula-test-card.json
if [ ! -f "$policy" ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "test/deps.sh: the ID card test needs $policy (run this script as root)" >&2
  else
    mkdir -p "$(dirname "$policy")"
    cat >"$policy" <<'JSON'
{"AutoSelectCertificateForUrls": ["{\"pattern\":\"https://127.0.0.1:*\",\"filter\":{\"ISSUER\":{\"CN\":\"Vula Test Card CA\"}}}"]}
JSON
  fi
fi

# The relying-party suite's npm packages, exactly as its lock file pins them, before the tests
# run (the test installs them itself only when run without this script). No browser download:
# playwright-core drives Debian's Chromium.
rp="$(dirname "$0")/rp"
if [ ! -d "$rp/node_modules/openid-client" ] || [ "$rp/package-lock.json" -nt "$rp/node_modules/.package-lock.json" ]; then
  echo "test/deps.sh: npm ci in test/rp"
  (cd "$rp" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund >/dev/null)
fi

# The wallet suite's npm packages (OpenID4VCI/VP, SD-JWT VC, status list, mdoc), the same way.
wallet="$(dirname "$0")/wallet"
if [ ! -d "$wallet/node_modules/@openid4vc/openid4vci" ] || [ "$wallet/package-lock.json" -nt "$wallet/node_modules/.package-lock.json" ]; then
  echo "test/deps.sh: npm ci in test/wallet"
  (cd "$wallet" && npm ci --no-audit --no-fund >/dev/null)
fi
