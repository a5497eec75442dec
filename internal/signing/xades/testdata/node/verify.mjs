// Independent checks of Vula's XAdES output, with xadesjs/xmldsigjs and @xmldom/xmldom (nothing
// of Vula's code). Used by the Go tests only.
//
//   node verify.mjs verify FILE...         prints true or false for each FILE, one a line: XML-DSig
//                                         core validation (every Reference digest, SignedProperties
//                                         included, and the SignatureValue); detached files are
//                                         read next to FILE
//   node verify.mjs sigts FILE OUT        writes the exc-c14n of ds:SignatureValue (the input of
//                                         the SignatureTimeStamp) to OUT
//   node verify.mjs archive FILE OUT      writes the input of the xadesv141:ArchiveTimeStamp
//                                         (EN 319 132-1, 5.5.2.2) to OUT
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { webcrypto, createHash } from 'node:crypto';
import { DOMParser } from '@xmldom/xmldom';
import * as xadesjs from 'xadesjs';
import * as dsig from 'xmldsigjs';

const DS = 'http://www.w3.org/2000/09/xmldsig#';
const XADES = 'http://uri.etsi.org/01903/v1.3.2#';
const XADES141 = 'http://uri.etsi.org/01903/v1.4.1#';

xadesjs.Application.setEngine('NodeJS', webcrypto);

const [mode, ...args] = process.argv.slice(2);
let file, doc, sig, dir;
function load(f) {
  file = f;
  doc = new DOMParser().parseFromString(readFileSync(f, 'utf8'), 'application/xml');
  sig = doc.getElementsByTagNameNS(DS, 'Signature')[0];
  dir = path.dirname(f);
}

function children(el, ns, name) {
  const r = [];
  for (let n = el.firstChild; n; n = n.nextSibling) {
    if (n.nodeType === 1 && (!ns || (n.namespaceURI === ns && n.localName === name))) r.push(n);
  }
  return r;
}

// excC14N canonicalizes el as it stands in its document: a copy carrying the namespace
// declarations in scope, through xmldsigjs's exclusive C14N transform.
function excC14N(el) {
  const copy = el.cloneNode(true);
  const seen = new Set();
  for (let i = 0; i < copy.attributes.length; i++) {
    const a = copy.attributes[i];
    if (a.name === 'xmlns' || a.name.startsWith('xmlns:')) seen.add(a.name);
  }
  for (let p = el.parentNode; p && p.nodeType === 1; p = p.parentNode) {
    for (let i = 0; i < p.attributes.length; i++) {
      const a = p.attributes[i];
      if ((a.name === 'xmlns' || a.name.startsWith('xmlns:')) && !seen.has(a.name)) {
        seen.add(a.name);
        copy.setAttribute(a.name, a.value);
      }
    }
  }
  const t = new dsig.XmlDsigExcC14NTransform();
  t.LoadInnerXml(copy);
  return Buffer.from(t.GetOutput(), 'utf8');
}

// referenceOctets is what a data Reference yields after its transforms.
function referenceOctets(ref) {
  const uri = ref.getAttribute('URI');
  const algs = [];
  for (const ts of children(ref, DS, 'Transforms')) {
    for (const t of children(ts, DS, 'Transform')) algs.push(t.getAttribute('Algorithm'));
  }
  if (uri === '') {
    // enveloped-signature then exc-c14n: the document without this signature
    const copy = doc.documentElement.cloneNode(true);
    const s = copy.getElementsByTagNameNS(DS, 'Signature')[0];
    s.parentNode.removeChild(s);
    const t = new dsig.XmlDsigExcC14NTransform();
    t.LoadInnerXml(copy);
    return Buffer.from(t.GetOutput(), 'utf8');
  }
  if (uri.startsWith('#')) {
    const id = uri.slice(1);
    const all = sig.getElementsByTagName('*');
    let target;
    for (let i = 0; i < all.length; i++) if (all[i].getAttribute('Id') === id) target = all[i];
    if (algs.includes('http://www.w3.org/2000/09/xmldsig#base64')) {
      return Buffer.from(target.textContent, 'base64');
    }
    return excC14N(target);
  }
  return readFileSync(path.join(dir, decodeURIComponent(uri)));
}

async function verify() {
  // xadesjs knows only the ArchiveTimeStamp of XAdES 1.3.2 and refuses the xadesv141 one as
  // malformed; it is unsigned (outside SignedInfo), so hiding it changes nothing xadesjs checks.
  // Its input is checked by the 'archive' mode and openssl instead.
  for (const a of Array.from(sig.getElementsByTagNameNS(XADES141, 'ArchiveTimeStamp'))) a.parentNode.removeChild(a);
  const sx = new xadesjs.SignedXml(doc);
  sx.LoadXml(sig);
  sx.contentHandler = async (ref) => {
    if (ref.Uri && !ref.Uri.startsWith('#')) return readFileSync(path.join(dir, decodeURIComponent(ref.Uri)));
    return null;
  };
  let ok = false;
  try {
    // The key is that of the KeyInfo certificate SigningCertificateV2 names by its digest.
    // (Left to choose, xmldsigjs imports every KeyInfo certificate with the signature's
    // algorithm, and fails on the EC CA certificates above an RSA signer.)
    const certDigest = sig.getElementsByTagNameNS(XADES, 'CertDigest')[0];
    const alg = { 'http://www.w3.org/2001/04/xmlenc#sha256': 'sha256', 'http://www.w3.org/2001/04/xmldsig-more#sha384': 'sha384',
      'http://www.w3.org/2001/04/xmlenc#sha512': 'sha512' }[certDigest.getElementsByTagNameNS(DS, 'DigestMethod')[0].getAttribute('Algorithm')];
    const want = certDigest.getElementsByTagNameNS(DS, 'DigestValue')[0].textContent.trim();
    let key;
    for (const c of Array.from(sig.getElementsByTagNameNS(DS, 'X509Certificate'))) {
      const der = Buffer.from(c.textContent, 'base64');
      if (createHash(alg).update(der).digest('base64') === want) {
        key = await new dsig.X509Certificate(der).exportKey(sx.Algorithm);
      }
    }
    if (!key) throw new Error('no KeyInfo certificate matches SigningCertificateV2');
    ok = await sx.Verify(key);
  } catch (e) {
    console.error(e && (e.message || JSON.stringify(e)), e && e.stack);
  }
  return ok;
}

if (mode === 'verify') {
  for (const f of args) {
    load(f);
    console.log((await verify()) ? 'true' : 'false');
  }
} else if (mode === 'sigts') {
  const [f, out] = args;
  load(f);
  writeFileSync(out, excC14N(children(sig, DS, 'SignatureValue')[0]));
} else if (mode === 'archive') {
  const [f, out] = args;
  load(f);
  const parts = [];
  const signedInfo = children(sig, DS, 'SignedInfo')[0];
  for (const ref of children(signedInfo, DS, 'Reference')) parts.push(referenceOctets(ref));
  parts.push(excC14N(signedInfo), excC14N(children(sig, DS, 'SignatureValue')[0]));
  for (const ki of children(sig, DS, 'KeyInfo')) parts.push(excC14N(ki));
  const usp = sig.getElementsByTagNameNS(XADES, 'UnsignedSignatureProperties')[0];
  for (const p of children(usp)) {
    if (p.namespaceURI === XADES141 && p.localName === 'ArchiveTimeStamp') break;
    parts.push(excC14N(p));
  }
  for (const o of children(sig, DS, 'Object')) {
    if (o.getElementsByTagNameNS(XADES, 'QualifyingProperties').length === 0) parts.push(excC14N(o));
  }
  writeFileSync(out, Buffer.concat(parts));
} else {
  console.error('usage: verify.mjs verify|sigts|archive FILE [OUT]');
  process.exit(2);
}
