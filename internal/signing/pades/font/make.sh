#!/usr/bin/env bash
# Remakes DejaVuSans-LGC.ttf, the font of visible signatures (../font.go): a fixed subset of
# DejaVu Sans from Debian 12's fonts-dejavu-core (2.37-6), made with fonttools' pyftsubset
# (4.38.0). The file is committed; the build and the tests need neither package:
#   apt-get install --no-install-recommends fonts-dejavu-core fonttools
# Kept: Latin (Basic, Latin-1, Extended-A and -B, Extended Additional: Albanian, Serbian Latin
# and the rest of Europe's Latin letters), combining diacritics, Greek, Cyrillic (with the
# Supplement), general punctuation, currency signs, letterlike symbols (№, ™), arrows, the
# replacement character. Each signature embeds only the glyphs it shows (../subset.go).
# Dropped: hinting and the layout tables (the appearance places glyphs one after another, on
# text in Unicode's composed form).
set -euo pipefail
cd "$(dirname "$0")"
pyftsubset /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf \
  --unicodes="U+0020-007E,U+00A0-024F,U+0300-036F,U+0370-03FF,U+0400-052F,U+1E00-1EFF,U+2010-205E,U+20A0-20BF,U+2100-214F,U+2190-2199,U+FFFD" \
  --no-hinting --layout-features='' --drop-tables+=GSUB,GPOS,GDEF,kern,FFTM,MATH --name-IDs='*' \
  --output-file=DejaVuSans-LGC.ttf
