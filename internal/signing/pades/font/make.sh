#!/usr/bin/env bash
# Remakes DejaVuSans-Latin.ttf, the font of visible signatures (../font.go): a fixed subset of
# DejaVu Sans from Debian 12's fonts-dejavu-core (2.37-6), made with fonttools' pyftsubset
# (4.38.0). The file is committed; the build and the tests need neither package:
#   apt-get install --no-install-recommends fonts-dejavu-core fonttools
# Kept: Basic Latin, Latin-1, Latin Extended-A (Albanian, Serbian Latin and the rest of
# Europe's Latin letters), dashes, quotes, bullet, ellipsis, euro, the replacement character.
# Dropped: hinting and the layout tables (the appearance places glyphs one after another).
set -euo pipefail
cd "$(dirname "$0")"
pyftsubset /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf \
  --unicodes="U+0020-007E,U+00A0-00FF,U+0100-017F,U+2013-2014,U+2018-201E,U+2022,U+2026,U+20AC,U+FFFD" \
  --no-hinting --layout-features='' --drop-tables+=GSUB,GPOS,GDEF,kern,FFTM --name-IDs='*' \
  --output-file=DejaVuSans-Latin.ttf
