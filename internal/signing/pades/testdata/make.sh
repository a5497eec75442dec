#!/usr/bin/env bash
# Remakes the PAdES signer's real-world PDF fixtures (realworld/) and bad inputs (bad/).
#
# The files are committed; this script only documents how they were made, so anyone can
# remake them with Debian 12's packages. The tests do not run it and need none of these
# tools:
#   apt-get install --no-install-recommends libreoffice-writer-nogui ghostscript \
#     texlive-latex-base texlive-latex-recommended texlive-fonts-recommended lmodern qpdf poppler-utils fonts-dejavu-core
# Outputs differ from the committed ones in their dates and /ID (LibreOffice and
# Ghostscript stamp the time); the structure is the same.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
good=$here/realworld
bad=$here/bad
mkdir -p "$good" "$bad"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

# A fixed date for the tools that honour it (pdfTeX).
export SOURCE_DATE_EPOCH=1709640000 # 2024-03-05T12:00:00Z
export FORCE_SOURCE_DATE=1

for tool in soffice gs pdflatex qpdf pdfinfo perl; do
  command -v "$tool" >/dev/null || { echo "make.sh: $tool is missing" >&2; exit 1; }
done

########################################################################################
# LibreOffice: a flat ODT (.fodt) of two pages, once plain and once with a form.
########################################################################################

# fodt FORMS FIELDS: a two-page municipal decision; FORMS goes into office:forms, FIELDS
# is a paragraph holding the form controls (both empty for the plain document).
fodt() {
  cat <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<office:document xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0"
 xmlns:style="urn:oasis:names:tc:opendocument:xmlns:style:1.0"
 xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"
 xmlns:fo="urn:oasis:names:tc:opendocument:xmlns:xsl-fo-compatible:1.0"
 xmlns:svg="urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0"
 xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0"
 xmlns:form="urn:oasis:names:tc:opendocument:xmlns:form:1.0"
 xmlns:dc="http://purl.org/dc/elements/1.1/"
 xmlns:meta="urn:oasis:names:tc:opendocument:xmlns:meta:1.0"
 xmlns:xlink="http://www.w3.org/1999/xlink"
 xmlns:ooo="http://openoffice.org/2004/office"
 office:version="1.3" office:mimetype="application/vnd.oasis.opendocument.text">
 <office:meta>
  <dc:title>Vendim / Rešenje / Decision</dc:title>
  <dc:subject>Komuna e Gjilanit / Opština Gnjilane / Municipality of Gjilan</dc:subject>
 </office:meta>
 <office:font-face-decls>
  <style:font-face style:name="DejaVu Serif" svg:font-family="'DejaVu Serif'" style:font-family-generic="roman"/>
 </office:font-face-decls>
 <office:styles>
  <style:default-style style:family="paragraph">
   <style:paragraph-properties fo:margin-bottom="0.25cm"/>
   <style:text-properties style:font-name="DejaVu Serif" fo:font-size="11pt" fo:language="sq" fo:country="AL"/>
  </style:default-style>
  <style:style style:name="Title" style:family="paragraph">
   <style:paragraph-properties fo:text-align="center" fo:margin-bottom="0.5cm"/>
   <style:text-properties fo:font-size="16pt" fo:font-weight="bold"/>
  </style:style>
  <style:style style:name="Heading" style:family="paragraph">
   <style:paragraph-properties fo:margin-top="0.4cm"/>
   <style:text-properties fo:font-weight="bold"/>
  </style:style>
 </office:styles>
 <office:automatic-styles>
  <style:style style:name="NewPage" style:family="paragraph" style:parent-style-name="Title">
   <style:paragraph-properties fo:break-before="page"/>
  </style:style>
  <style:page-layout style:name="A4">
   <style:page-layout-properties fo:page-width="21cm" fo:page-height="29.7cm"
    fo:margin-top="2cm" fo:margin-bottom="2cm" fo:margin-left="2.5cm" fo:margin-right="2.5cm"/>
  </style:page-layout>
 </office:automatic-styles>
 <office:master-styles>
  <style:master-page style:name="Standard" style:page-layout-name="A4"/>
 </office:master-styles>
 <office:body>
  <office:text>
   $1
   <text:p text:style-name="Title">Komuna e Gjilanit / Opština Gnjilane / Municipality of Gjilan</text:p>
   <text:p text:style-name="Title">Vendim / Rešenje / Decision</text:p>
   <text:p>Nr. / Br. / No. 01-350/2024, Gjilan, 5. 3. 2024</text:p>
   <text:p>Në bazë të nenit 12 të Ligjit për vetëqeverisjen lokale, Kryetari i Komunës merr këtë vendim për çështjen e lejes së ndërtimit.</text:p>
   <text:p>Na osnovu člana 12 Zakona o lokalnoj samoupravi, predsednik opštine donosi ovo rešenje o izdavanju građevinske dozvole; žalba se podnosi u roku od petnaest dana.</text:p>
   <text:p>Under Article 12 of the Law on Local Self-Government, the Mayor takes this decision on the building permit; an appeal may be lodged within fifteen days.</text:p>
   <text:p text:style-name="Heading">Neni 1 / Član 1 / Article 1</text:p>
   <text:p>Leja e ndërtimit jepet për objektin në rrugën "Skënderbeu" nr. 7. / Građevinska dozvola se izdaje za objekat u ulici "Skënderbeu" br. 7. / The building permit is granted for the building at 7 "Skënderbeu" Street.</text:p>
   $2
   <text:p text:style-name="NewPage">Arsyetimi / Obrazloženje / Reasoning</text:p>
   <text:p>Kërkesa është paraqitur më 1. 2. 2024 dhe është shqyrtuar sipas procedurës së rregullt. Dokumentacioni është i plotë.</text:p>
   <text:p>Zahtev je podnet 1. 2. 2024. i razmotren je po redovnom postupku. Dokumentacija je potpuna; čuvar arhive je potvrdio prijem (ćirilica: Решење).</text:p>
   <text:p>The request was filed on 1 February 2024 and examined in the ordinary procedure. The file is complete.</text:p>
   <text:p text:style-name="Heading">Këshilla juridike / Pravna pouka / Legal remedy</text:p>
   <text:p>Kundër këtij vendimi mund të paraqitet ankesë. / Protiv ovog rešenja može se izjaviti žalba. / An appeal may be lodged against this decision.</text:p>
   <text:p>Kryetari / Predsednik / Mayor: ______________________</text:p>
  </office:text>
 </office:body>
</office:document>
EOF
}

fodt "" "" >libreoffice.fodt

# Two controls: a text field "emri" and a checkbox "pranoj", anchored as characters.
fodt '<office:forms form:automatic-focus="false" form:apply-design-mode="false">
    <form:form form:name="Standard" form:control-implementation="ooo:com.sun.star.form.component.Form">
     <form:text form:name="emri" form:control-implementation="ooo:com.sun.star.form.component.TextField"
      xml:id="control1" form:id="control1" form:max-length="80" form:value=""/>
     <form:checkbox form:name="pranoj" form:control-implementation="ooo:com.sun.star.form.component.CheckBox"
      xml:id="control2" form:id="control2" form:label="Pranoj / Prihvatam / I accept"
      form:current-state="unchecked" form:image-position="center"/>
    </form:form>
   </office:forms>' \
  '<text:p>Emri / Ime / Name: <draw:control text:anchor-type="as-char" svg:width="8cm" svg:height="0.7cm" draw:control="control1"/></text:p>
   <text:p><draw:control text:anchor-type="as-char" svg:width="8cm" svg:height="0.7cm" draw:control="control2"/></text:p>' \
  >libreoffice-form.fodt

lo_export='pdf:writer_pdf_Export:{"ExportFormFields":{"type":"boolean","value":"true"}}'
soffice -env:UserInstallation="file://$work/lo-profile" --headless --norestore \
  --convert-to "$lo_export" --outdir "$work" libreoffice.fodt libreoffice-form.fodt
cp libreoffice.pdf libreoffice-form.pdf "$good/"

########################################################################################
# Ghostscript: hand-written PostScript through pdfwrite.
########################################################################################

# Written in UTF-8 for reading; sed below turns the non-ASCII letters into the octal
# codes of the font encoding set up in the prologue.
cat >ghostscript.ps.utf8 <<'EOF'
%!PS-Adobe-3.0
%%Title: Vendim / Resenje / Decision
%%Pages: 2
%%EndComments
[ /Title (Vendim / Resenje / Decision) /Author (Komuna e Gjilanit / Opstina Gnjilane)
  /Subject (Municipality of Gjilan) /DOCINFO pdfmark
% ISO Latin-1 plus the Serbian Latin letters at 128..137 (unused in Latin-1).
/VulaEncoding ISOLatin1Encoding 256 array copy def
VulaEncoding dup 8#200 /ccaron put dup 8#201 /cacute put dup 8#202 /scaron put
  dup 8#203 /zcaron put dup 8#204 /dcroat put dup 8#205 /Ccaron put
  dup 8#206 /Scaron put dup 8#207 /Zcaron put 8#210 /Dcroat put
/reencode { % newname basename
  findfont dup length dict begin
    { 1 index /FID ne { def } { pop pop } ifelse } forall
    /Encoding VulaEncoding def currentdict
  end definefont pop
} def
/Body /Times-Roman reencode
/Bold /Times-Bold reencode
/y 770 def
/line { 72 y moveto show /y y 16 sub def } def
/title { /Bold findfont 15 scalefont setfont line /y y 6 sub def /Body findfont 11 scalefont setfont } def
/head { /y y 6 sub def /Bold findfont 11 scalefont setfont line /Body findfont 11 scalefont setfont } def
%%EndProlog
%%Page: 1 1
(Komuna e Gjilanit / Opština Gnjilane / Municipality of Gjilan) title
(Vendim / Rešenje / Decision) title
(Nr. / Br. / No. 01-351/2024, Gjilan, 5. 3. 2024) line
(Në bazë të nenit 12 të Ligjit për vetëqeverisjen lokale, Kryetari i Komunës merr) line
(këtë vendim për çështjen e lejes së ndërtimit.) line
(Na osnovu člana 12 Zakona o lokalnoj samoupravi, predsednik opštine donosi ovo) line
(rešenje o izdavanju građevinske dozvole; žalba se podnosi u roku od petnaest dana.) line
(Under Article 12 of the Law on Local Self-Government, the Mayor takes this decision) line
(on the building permit; an appeal may be lodged within fifteen days.) line
(Neni 1 / Član 1 / Article 1) head
(Leja e ndërtimit jepet për objektin në rrugën Skënderbeu nr. 7.) line
(Građevinska dozvola se izdaje za objekat u ulici Skënderbeu br. 7.) line
(The building permit is granted for the building at 7 Skënderbeu Street.) line
showpage
%%Page: 2 2
/y 770 def
(Arsyetimi / Obrazloženje / Reasoning) title
(Kërkesa është paraqitur më 1. 2. 2024 dhe është shqyrtuar sipas procedurës së rregullt.) line
(Zahtev je podnet 1. 2. 2024. i razmotren je po redovnom postupku. Đorđe Čolić, Šef.) line
(The request was filed on 1 February 2024 and examined in the ordinary procedure.) line
(Këshilla juridike / Pravna pouka / Legal remedy) head
(Kundër këtij vendimi mund të paraqitet ankesë. / Protiv ovog rešenja može se izjaviti) line
(žalba. / An appeal may be lodged against this decision.) line
(Kryetari / Predsednik / Mayor: ______________________) line
showpage
%%EOF
EOF
sed -e 's/ë/\\353/g; s/Ë/\\313/g; s/ç/\\347/g; s/Ç/\\307/g' \
    -e 's/č/\\200/g; s/ć/\\201/g; s/š/\\202/g; s/ž/\\203/g; s/đ/\\204/g' \
    -e 's/Č/\\205/g; s/Š/\\206/g; s/Ž/\\207/g; s/Đ/\\210/g' \
    ghostscript.ps.utf8 >ghostscript.ps
if LC_ALL=C grep -q '[^ -~]' ghostscript.ps; then
  echo "make.sh: ghostscript.ps still has a letter without an octal code" >&2; exit 1
fi
gs -q -dSAFER -dBATCH -dNOPAUSE -sDEVICE=pdfwrite -sPAPERSIZE=a4 \
  -sOutputFile=ghostscript.pdf ghostscript.ps
cp ghostscript.pdf "$good/"

########################################################################################
# pdfLaTeX: plain and with hyperref form fields.
########################################################################################

# latex_doc FORM: the same decision; FORM is put on page 1 (empty for the plain one).
latex_doc() {
  cat <<'EOF'
\documentclass[a4paper,11pt]{article}
\usepackage[T1]{fontenc}
\usepackage[utf8]{inputenc}
\usepackage{lmodern}
\usepackage[pdfusetitle]{hyperref}
\title{Vendim / Rešenje / Decision}
\author{Komuna e Gjilanit / Opština Gnjilane / Municipality of Gjilan}
\date{5. 3. 2024}
\begin{document}
\maketitle
\noindent Nr. / Br. / No. 01-352/2024

Në bazë të nenit 12 të Ligjit për vetëqeverisjen lokale, Kryetari i Komunës merr
këtë vendim për çështjen e lejes së ndërtimit.

Na osnovu člana 12 Zakona o lokalnoj samoupravi, predsednik opštine donosi ovo
rešenje o izdavanju građevinske dozvole; žalba se podnosi u roku od petnaest dana.

Under Article 12 of the Law on Local Self-Government, the Mayor takes this decision
on the building permit; an appeal may be lodged within fifteen days.

\section*{Neni 1 / Član 1 / Article 1}
Leja e ndërtimit jepet për objektin në rrugën „Skënderbeu“ nr.~7. /
Građevinska dozvola se izdaje za objekat u ulici „Skënderbeu“ br.~7. /
The building permit is granted for the building at 7 “Skënderbeu” Street.
EOF
  printf '\n%s\n\n' "$1"
  cat <<'EOF'
\newpage
\section*{Arsyetimi / Obrazloženje / Reasoning}
Kërkesa është paraqitur më 1.~2.~2024 dhe është shqyrtuar sipas procedurës së rregullt.
Zahtev je podnet 1.~2.~2024. i razmotren je po redovnom postupku (Đorđe Čolić, šef).
The request was filed on 1 February 2024 and examined in the ordinary procedure.

\section*{Këshilla juridike / Pravna pouka / Legal remedy}
Kundër këtij vendimi mund të paraqitet ankesë. /
Protiv ovog rešenja može se izjaviti žalba. /
An appeal may be lodged against this decision.

\bigskip
\noindent Kryetari / Predsednik / Mayor: \rule{6cm}{0.4pt}
\end{document}
EOF
}

latex_doc "" >latex.tex
latex_doc '\bigskip
\begin{Form}
\noindent\TextField[name=emri,width=8cm,charsize=10pt]{Emri / Ime / Name:}\par\medskip
\noindent\TextField[name=numri,width=4cm,charsize=10pt,value={01-352/2024}]{Nr. / Br. / No.:}\par\medskip
\noindent\CheckBox[name=pranoj,width=1em]{Pranoj / Prihvatam / I accept}
\end{Form}' >latex-form.tex
for doc in latex latex-form; do
  pdflatex -interaction=nonstopmode -halt-on-error "$doc.tex" >/dev/null
  pdflatex -interaction=nonstopmode -halt-on-error "$doc.tex" >/dev/null
  cp "$doc.pdf" "$good/"
done

########################################################################################
# qpdf rewrites: PDF 1.4 with a classic xref table, PDF 1.7 with an xref stream.
########################################################################################

# From pdfTeX's output (object streams) to a classic xref table.
qpdf --deterministic-id --force-version=1.4 --object-streams=disable \
  latex.pdf "$good/pdf14.pdf"
# From LibreOffice's output (classic xref table) to object streams and an xref stream.
qpdf --deterministic-id --force-version=1.7 --object-streams=generate \
  libreoffice.pdf "$good/pdf17-xrefstream.pdf"

########################################################################################
# An incremental update appended by hand to pdf14.pdf: page 1 gets a text annotation
# (its page object is written anew) and the document information is replaced.
########################################################################################

base=$good/pdf14.pdf
out=$good/incremental.pdf
trailer=$(qpdf --show-object=trailer "$base")
size=$(sed -n 's|.*/Size \([0-9]*\).*|\1|p' <<<"$trailer")
root=$(sed -n 's|.*/Root \([0-9]* [0-9]* R\).*|\1|p' <<<"$trailer")
id=$(sed -n 's|.*/ID \(\[[^]]*\]\).*|\1|p' <<<"$trailer")
prev=$(tail -c 64 "$base" | tr -d '\r' | awk '/^startxref/ { getline; print }')
page=$(qpdf --show-pages "$base" | sed -n 's|^page 1: \([0-9]*\) 0 R$|\1|p')
pagedict=$(qpdf --show-object="$page" "$base")
case $pagedict in *"/Annots"*) echo "make.sh: page 1 already has /Annots" >&2; exit 1 ;; esac
annot=$size
info=$((size + 1))
[ "$(tail -c 1 "$base" | od -An -c | tr -d ' ')" = '\n' ] || { echo "make.sh: base does not end in a newline" >&2; exit 1; }

cp "$base" "$out"
off_page=$(stat -c %s "$out")
printf '%s 0 obj\n%s /Annots [ %s 0 R ] >>\nendobj\n' "$page" "${pagedict%>>}" "$annot" >>"$out"
off_annot=$(stat -c %s "$out")
printf '%s 0 obj\n<< /Type /Annot /Subtype /Text /Rect [ 520 780 540 800 ] /F 4 /Name /Comment /Open false /Contents (Shqyrtuar / Pregledano / Reviewed) /T (Arkiva / Arhiva / Archive) /M (D:20240306090000Z) >>\nendobj\n' "$annot" >>"$out"
off_info=$(stat -c %s "$out")
printf '%s 0 obj\n<< /Title (Vendim / Resenje / Decision) /Producer (make.sh: incremental update by hand) /CreationDate (D:20240305120000Z) /ModDate (D:20240306090000Z) >>\nendobj\n' "$info" >>"$out"
off_xref=$(stat -c %s "$out")
{
  printf 'xref\n0 1\n0000000000 65535 f \n'
  printf '%s 1\n%010d 00000 n \n' "$page" "$off_page"
  printf '%s 2\n%010d 00000 n \n%010d 00000 n \n' "$annot" "$off_annot" "$off_info"
  printf 'trailer\n<< /Size %s /Root %s /Info %s 0 R /Prev %s /ID %s >>\n' "$((info + 1))" "$root" "$info" "$prev" "$id"
  printf 'startxref\n%s\n%%%%EOF\n' "$off_xref"
} >>"$out"

########################################################################################
# Bad inputs.
########################################################################################

cat >"$bad/not-a-pdf.pdf" <<'EOF'
Vendim / Rešenje / Decision
This is a plain text file with a .pdf name: it has no %PDF- header, no objects,
no xref and no trailer. A PDF signer must refuse it.
EOF

# The first half of LibreOffice's output: no xref table, no trailer, no %%EOF.
half=$(( $(stat -c %s libreoffice.pdf) / 2 ))
head -c "$half" libreoffice.pdf >"$bad/truncated.pdf"

# pdf14.pdf with every in-use xref offset moved 37 bytes on: startxref finds the table,
# but each entry points into the middle of an object.
perl -0777 -pe 's/^(\d{10}) (\d{5}) n/sprintf("%010d %05d n", $1 + 37, $2)/mge' \
  "$good/pdf14.pdf" >"$bad/broken-xref.pdf"
cmp -s "$good/pdf14.pdf" "$bad/broken-xref.pdf" && { echo "make.sh: no xref entry changed" >&2; exit 1; }
# pdf14.pdf with startxref pointing 100 bytes before the xref table (the entries are right).
perl -0777 -pe 's/startxref\s+(\d+)\s+%%EOF\s*\z/sprintf("startxref\n%d\n%%%%EOF\n", $1 - 100)/e' \
  "$good/pdf14.pdf" >"$bad/broken-startxref.pdf"
cmp -s "$good/pdf14.pdf" "$bad/broken-startxref.pdf" && { echo "make.sh: startxref not changed" >&2; exit 1; }

# Encrypted with a user password (AES-256, R6): cannot be opened without "vula-user".
qpdf --encrypt vula-user vula-owner 256 -- libreoffice.pdf "$bad/encrypted.pdf"
# An owner password only (empty user password: opens without one, AES-128, R4), with
# modification and extraction not allowed.
qpdf --encrypt "" vula-owner 128 --use-aes=y --modify=none --extract=n -- \
  ghostscript.pdf "$bad/encrypted-owner-only.pdf"

########################################################################################
# Checks: every good file passes qpdf --check; print versions for README.md.
########################################################################################

for f in "$good"/*.pdf; do
  qpdf --check "$f" >/dev/null || { echo "make.sh: qpdf --check failed on $f" >&2; exit 1; }
done
echo "made:"
ls -l "$good" "$bad"
