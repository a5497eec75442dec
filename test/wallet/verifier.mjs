// A relying party's verifier built on @openid4vc/openid4vp, for `vula wallet present`
// (run by test/holder_test.go). It makes an OpenID4VP 1.0 authorization request — a request
// object signed with an x509_san_dns client identifier, a DCQL query, response mode
// direct_post or direct_post.jwt (encrypted to its key with ECDH-ES) — serves it on the
// loopback over TLS, prints the openid4vp:// URI, and checks the answer the Go wallet posts: the library
// parses and validates the response; @sd-jwt/sd-jwt-vc verifies the presentation (issuer
// signature by the x5c leaf chained to Vula's root, the disclosures, key binding with this
// request's nonce and client_id), or @animo-id/mdoc the mdoc's DeviceResponse (issuer data and
// chain, and the device signature over OpenID4VP 1.0's SessionTranscript). It prints one JSON
// line per case, and exits.
//
// Environment: VERIFIER_CERT, VERIFIER_KEY (PEM: the request signer, SAN dNSName localhost),
// VERIFIER_CA (PEM: its issuer, sent in x5c), VERIFIER_ROOT (Vula's root), VERIFIER_MODE
// (direct_post or direct_post.jwt), VERIFIER_CLAIMS (comma-separated claim paths to ask for,
// dotted), VERIFIER_EXPECT (JSON object: the claims the presentation must disclose, and no
// other personal claim), VERIFIER_FORMAT (dc+sd-jwt, the default, or mso_mdoc: then the claims
// are element identifiers of eu.europa.ec.eudi.pid.1).

import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import { Openid4vpVerifier } from '@openid4vc/openid4vp';
import { HashAlgorithm } from '@openid4vc/oauth2';
import { SDJwtVcInstance } from '@sd-jwt/sd-jwt-vc';
import { cborEncode, DataItem, Verifier } from '@animo-id/mdoc';
import { assert, b64u, decodePart, mdocContext } from './common.mjs';

const env = process.env;

const leaf = new crypto.X509Certificate(fs.readFileSync(env.VERIFIER_CERT));
const ca = new crypto.X509Certificate(fs.readFileSync(env.VERIFIER_CA));
const root = new crypto.X509Certificate(fs.readFileSync(env.VERIFIER_ROOT));
const signKey = crypto.createPrivateKey(fs.readFileSync(env.VERIFIER_KEY));
const mode = env.VERIFIER_MODE || 'direct_post';
const expect = JSON.parse(env.VERIFIER_EXPECT || '{}');

// The key the wallet encrypts a direct_post.jwt response to.
const enc = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
const encJwk = { ...enc.publicKey.export({ format: 'jwk' }), kid: 'enc-1', use: 'enc', alg: 'ECDH-ES' };

// ECDH-ES (RFC 7518 §4.6) with A128GCM or A256GCM: the JWE a direct_post.jwt response is.
function decryptJwe(jwe) {
  const [ph, ek, iv, ct, tag] = jwe.split('.');
  const h = decodePart(ph);
  assert(h.alg === 'ECDH-ES' && ek === '', `JWE alg ${h.alg}`);
  const bits = { A128GCM: 128, A256GCM: 256 }[h.enc];
  assert(bits, `JWE enc ${h.enc}`);
  const z = crypto.diffieHellman({ privateKey: enc.privateKey, publicKey: crypto.createPublicKey({ key: h.epk, format: 'jwk' }) });
  const field = (b) => { const l = Buffer.alloc(4); l.writeUInt32BE(b.length); return Buffer.concat([l, b]); };
  const pub = Buffer.alloc(4); pub.writeUInt32BE(bits);
  const other = Buffer.concat([field(Buffer.from(h.enc)), field(Buffer.from(h.apu || '', 'base64url')),
    field(Buffer.from(h.apv || '', 'base64url')), pub]);
  const key = crypto.createHash('sha256').update(Buffer.from([0, 0, 0, 1])).update(z).update(other).digest().subarray(0, bits / 8);
  const d = crypto.createDecipheriv(`aes-${bits}-gcm`, key, Buffer.from(iv, 'base64url'));
  d.setAAD(Buffer.from(ph));
  d.setAuthTag(Buffer.from(tag, 'base64url'));
  return Buffer.concat([d.update(Buffer.from(ct, 'base64url')), d.final()]).toString();
}

const callbacks = {
  hash: (data, alg) => {
    assert(alg === HashAlgorithm.Sha256, `hash ${alg}`);
    return new Uint8Array(crypto.createHash('sha256').update(data).digest());
  },
  signJwt: (signer, { header, payload }) => {
    const input = b64u(JSON.stringify(header)) + '.' + b64u(JSON.stringify(payload));
    const sig = crypto.sign('sha256', Buffer.from(input), { key: signKey, dsaEncoding: 'ieee-p1363' });
    return { jwt: input + '.' + b64u(sig), signerJwk: leaf.publicKey.export({ format: 'jwk' }) };
  },
  decryptJwe: (jwe) => ({ decrypted: true, decryptionJwk: encJwk, payload: decryptJwe(jwe) }),
  encryptJwe: () => { throw new Error('not used'); },
  verifyJwt: () => { throw new Error('not used'); },
  getX509CertificateMetadata: (c) => {
    const cert = new crypto.X509Certificate(Buffer.from(c, 'base64'));
    const names = (cert.subjectAltName || '').split(', ');
    return { sanDnsNames: names.filter((n) => n.startsWith('DNS:')).map((n) => n.slice(4)),
      sanUriNames: names.filter((n) => n.startsWith('URI:')).map((n) => n.slice(4)) };
  },
};

// The presentation's issuer key: the x5c leaf, accepted only when its chain ends at Vula's root.
function verifyIssuerJws(data, sig) {
  const header = decodePart(data.split('.')[0]);
  const chain = header.x5c.map((c) => new crypto.X509Certificate(Buffer.from(c, 'base64')));
  for (let i = 0; i < chain.length; i++) {
    const issuer = i + 1 < chain.length ? chain[i + 1] : root;
    assert(chain[i].checkIssued(issuer) && chain[i].verify(issuer.publicKey), `x5c[${i}] is not issued by ${issuer.subject}`);
  }
  return crypto.verify('sha256', Buffer.from(data), { key: chain[0].publicKey, dsaEncoding: 'ieee-p1363' }, Buffer.from(sig, 'base64url'));
}

const sdjwt = new SDJwtVcInstance({
  hasher: (data, alg) => new Uint8Array(crypto.createHash(alg.replace('-', '')).update(data).digest()),
  hashAlg: 'sha-256',
  verifier: verifyIssuerJws,
  kbVerifier: (data, sig, payload) => crypto.verify('sha256', Buffer.from(data),
    { key: crypto.createPublicKey({ key: payload.cnf.jwk, format: 'jwk' }), dsaEncoding: 'ieee-p1363' }, Buffer.from(sig, 'base64url')),
});

const verifier = new Openid4vpVerifier({ callbacks });
const nonce = b64u(crypto.randomBytes(16));
const state = b64u(crypto.randomBytes(16));
const clientId = 'x509_san_dns:localhost';
const format = env.VERIFIER_FORMAT || 'dc+sd-jwt';
const PID = 'eu.europa.ec.eudi.pid.1';
const claims = (env.VERIFIER_CLAIMS || 'given_name').split(',').map((p) => ({ path: format === 'mso_mdoc' ? [PID, p] : p.split('.') }));
const credentialQuery = format === 'mso_mdoc' ? { id: 'pid', format, meta: { doctype_value: PID }, claims }
  : { id: 'pid', format, meta: { vct_values: ['urn:eudi:pid:1'] }, claims };

// OpenID4VP 1.0's SessionTranscript (Appendix B.2.6.1): [null, null, ["OpenID4VPHandover",
// sha-256 of [client_id, nonce, the encryption key's JWK thumbprint or null, response_uri]]].
function sessionTranscript(responseUri) {
  let jkt = null;
  if (mode === 'direct_post.jwt') {
    const canon = JSON.stringify({ crv: encJwk.crv, kty: encJwk.kty, x: encJwk.x, y: encJwk.y });
    jkt = new Uint8Array(crypto.createHash('sha256').update(canon).digest());
  }
  const info = crypto.createHash('sha256').update(cborEncode([clientId, nonce, jkt, responseUri])).digest();
  return cborEncode(DataItem.fromData([null, null, ['OpenID4VPHandover', new Uint8Array(info)]]));
}

// TLS with the request signer's certificate (SAN localhost): the library wants https URLs.
const server = https.createServer({ key: fs.readFileSync(env.VERIFIER_KEY), cert: fs.readFileSync(env.VERIFIER_CERT) });
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const base = `https://localhost:${server.address().port}`;
const request = await verifier.createOpenId4vpAuthorizationRequest({
  authorizationRequestPayload: {
    response_type: 'vp_token',
    client_id: clientId,
    response_uri: `${base}/response`,
    response_mode: mode,
    nonce,
    state,
    dcql_query: { credentials: [credentialQuery] },
    client_metadata: {
      client_name: 'A test relying party',
      jwks: { keys: [encJwk] },
      encrypted_response_enc_values_supported: ['A128GCM'],
      vp_formats_supported: { 'dc+sd-jwt': { 'sd-jwt_alg_values': ['ES256'], 'kb-jwt_alg_values': ['ES256'] },
        mso_mdoc: { issuerauth_alg_values: [-7], deviceauth_alg_values: [-7] } },
    },
  },
  jar: { requestUri: `${base}/request`, jwtSigner: { method: 'x5c', alg: 'ES256', x5c: [leaf.raw.toString('base64'), ca.raw.toString('base64')] } },
});

function report(name, f) {
  try {
    f();
    console.log(JSON.stringify({ case: name, ok: true }));
  } catch (e) {
    console.log(JSON.stringify({ case: name, ok: false, error: String(e && e.stack || e) }));
  }
}

const timer = setTimeout(() => { report('the wallet posted an answer', () => assert(false, 'no answer in 90 s')); process.exit(0); }, 90_000);
server.on('request', async (req, res) => {
  if (req.method === 'GET' && req.url === '/request') {
    res.writeHead(200, { 'Content-Type': 'application/oauth-authz-req+jwt' });
    res.end(request.jar.authorizationRequestJwt);
    return;
  }
  if (req.method !== 'POST' || req.url !== '/response') {
    res.writeHead(404).end();
    return;
  }
  let body = '';
  for await (const chunk of req) body += chunk;
  const form = Object.fromEntries(new URLSearchParams(body));
  let ok = false;
  try {
    const parsed = await verifier.parseOpenid4vpAuthorizationResponse({ authorizationResponse: form,
      authorizationRequestPayload: request.authorizationRequestPayload, callbacks });
    report(`${mode}: @openid4vc/openid4vp parses and validates the response`, () => {
      assert(parsed.type === 'dcql', `type ${parsed.type}`);
      assert(mode === 'direct_post' ? (!!form.vp_token && !form.response) : !!form.response, 'the response mode was not followed');
      assert(mode === 'direct_post' || parsed.jarm.type === 'Encrypted', 'not encrypted');
    });
    const pres = parsed.dcql.presentations.pid;
    const presented = Array.isArray(pres) ? pres[0] : pres;
    if (format === 'mso_mdoc') {
      const mdoc = await new Verifier().verifyDeviceResponse({ encodedDeviceResponse: new Uint8Array(Buffer.from(presented, 'base64url')),
        encodedSessionTranscript: sessionTranscript(request.authorizationRequestPayload.response_uri),
        trustedCertificates: [new Uint8Array(root.raw)] }, mdocContext);
      report(`${mode}: @animo-id/mdoc verifies the DeviceResponse and its device signature`, () => {
        assert(mdoc.documents.length === 1 && mdoc.documents[0].docType === PID, 'one PID document');
      });
      report(`${mode}: only the asked mdoc elements are disclosed`, () => {
        const ns = mdoc.documents[0].getIssuerNameSpace(PID);
        const got = Object.fromEntries([...ns.entries()].map(([k, v]) => [k, v]));
        assert(JSON.stringify(Object.keys(got).sort()) === JSON.stringify(Object.keys(expect).sort()), `disclosed ${Object.keys(got)}`);
        for (const [k, want] of Object.entries(expect)) assert(JSON.stringify(got[k]) === JSON.stringify(want), `${k}: ${JSON.stringify(got[k])}`);
      });
    } else {
      await checkSDJWT(presented);
    }
    ok = true;
  } catch (e) {
    report(`${mode}: the response verifies`, () => { throw e; });
  }
  res.writeHead(ok ? 200 : 400, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify(ok ? { redirect_uri: `${base}/done#response_code=${b64u(crypto.randomBytes(8))}` } : { error: 'invalid_request' }));
  clearTimeout(timer);
  server.close();
});

async function checkSDJWT(presented) {
  const v = await sdjwt.verify(presented, { keyBindingNonce: nonce, requiredClaimKeys: Object.keys(expect) });
  report(`${mode}: @sd-jwt/sd-jwt-vc verifies the presentation and its key binding`, () => {
    assert(v.kb && v.kb.payload.aud === clientId, `kb aud ${v.kb && v.kb.payload.aud}`);
    assert(v.kb.payload.nonce === nonce, 'kb nonce');
    assert(Math.abs(v.kb.payload.iat - Date.now() / 1000) < 300, 'kb iat');
  });
  report(`${mode}: only the asked claims are disclosed`, () => {
    const p = v.payload;
    for (const [k, want] of Object.entries(expect)) assert(JSON.stringify(p[k]) === JSON.stringify(want), `${k}: ${JSON.stringify(p[k])}`);
    const personal = ['family_name', 'given_name', 'birthdate', 'personal_administrative_number', 'nationalities', 'age_in_years',
      'age_birth_year', 'age_equal_or_over', 'email', 'date_of_issuance', 'date_of_expiry', 'issuing_authority', 'issuing_country'];
    const extra = personal.filter((k) => p[k] !== undefined && !(k in expect));
    assert(extra.length === 0, `disclosed beyond the request: ${extra}`);
    const disclosures = presented.split('~').slice(1, -1).filter((d) => d.length > 0 && !d.includes('.'));
    assert(disclosures.length <= Object.keys(expect).length * 2, `${disclosures.length} disclosures`);
  });
}

console.log(JSON.stringify({ request_uri: request.authorizationRequest }));
