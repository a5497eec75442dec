// Presentation suite: Vula's OpenID4VP verifier against a third-party wallet library (run by
// test/wallet_test.go after wallet.mjs has received PIDs). Each case prints one JSON line
// {"case", "ok", "error", "ms"}.
//
//   the relying party    gets a client_credentials token with scope verify, asks Vula for a
//                        presentation (POST /api/v1/presentations, a DCQL query) and fetches the
//                        result
//   @openid4vc/openid4vp the wallet: resolves the deep link, fetches the request object at
//                        request_uri and verifies it with its defaults (x509_hash client id, x5c
//                        chain checked here up to Vula's root), builds the authorization response
//                        (direct_post, or direct_post.jwt encrypted with `jose` to the
//                        transaction's key) and posts it to the response_uri
//   @sd-jwt/sd-jwt-vc    presents the PID with only the claims the DCQL query asks for, and a key
//                        binding JWT for Vula's client id and nonce; it also issues the outside
//                        credentials of the negative cases (an expired one under a trusted CA, one
//                        under a CA Vula does not trust)
//   @animo-id/mdoc       presents the mdoc PID: a DeviceResponse with the asked elements and a
//                        device signature over OpenID4VP 1.0's SessionTranscript
//
// PRESENT_MODE=valid runs the accepted and refused cases; PRESENT_MODE=revoked presents a PID after
// `vula pid revoke` and expects its refusal for its status.
import crypto from 'node:crypto';
import fs from 'node:fs';
import * as jose from 'jose';
import { Openid4vpClient } from '@openid4vc/openid4vp';
import { HashAlgorithm } from '@openid4vc/oauth2';
import { SDJwtVcInstance } from '@sd-jwt/sd-jwt-vc';
import { cborEncode, DataItem, DeviceResponse, MDoc, parseIssuerSigned } from '@animo-id/mdoc';
import { run, assert, b64u, decodePart } from './common.mjs';

const env = process.env;
const base = env.WALLET_ISSUER;
const root = new crypto.X509Certificate(fs.readFileSync(env.WALLET_ROOT));
const state = JSON.parse(fs.readFileSync(env.WALLET_STATE));

const sha256 = (data) => new Uint8Array(crypto.createHash('sha256').update(data).digest());

// The relying party's side: plain HTTP calls, as a relying party's backend makes them.
async function token(id, secret) {
  const r = await fetch(base + '/oauth2/token', { method: 'POST', headers: { Authorization: 'Basic ' + Buffer.from(`${id}:${secret}`).toString('base64'),
    'Content-Type': 'application/x-www-form-urlencoded' }, body: 'grant_type=client_credentials&scope=verify' });
  const j = await r.json();
  assert(r.ok && j.access_token, `token for ${id}: ${r.status} ${JSON.stringify(j)}`);
  return j.access_token;
}
const rpToken = await token(env.WALLET_RP_ID, env.WALLET_RP_SECRET);
const rp2Token = await token(env.WALLET_RP2_ID, env.WALLET_RP2_SECRET);

async function askVula(dcql, responseMode, extra = {}) {
  const r = await fetch(base + '/api/v1/presentations', { method: 'POST', headers: { Authorization: 'Bearer ' + rpToken, 'Content-Type': 'application/json' },
    body: JSON.stringify({ dcql_query: dcql, response_mode: responseMode, ...extra }) });
  const j = await r.json();
  assert(r.status === 201, `POST /api/v1/presentations: ${r.status} ${JSON.stringify(j)}`);
  return j;
}

async function result(tx, tok = rpToken) {
  const r = await fetch(tx.result_uri, { headers: { Authorization: 'Bearer ' + tok } });
  return { status: r.status, body: await r.json() };
}

const pidQuery = (...paths) => ({ credentials: [{ id: 'pid', format: 'dc+sd-jwt', meta: { vct_values: ['urn:eudi:pid:1'] },
  claims: paths.map((p) => ({ path: p })) }] });

// The wallet's callbacks: node's crypto for hashes and signatures, `jose` for the JWE.
const callbacks = {
  hash: (data, alg) => { assert(alg === HashAlgorithm.Sha256, `hash ${alg}`); return sha256(data); },
  generateRandom: (n) => new Uint8Array(crypto.randomBytes(n)),
  fetch,
  // The request object is signed by the x5c leaf, accepted only when its chain ends at Vula's root.
  verifyJwt: async (signer, { compact }) => {
    assert(signer.method === 'x5c', `signer method ${signer.method}`);
    const chain = signer.x5c.map((c) => new crypto.X509Certificate(Buffer.from(c, 'base64')));
    for (let i = 0; i < chain.length; i++) {
      const issuer = i + 1 < chain.length ? chain[i + 1] : root;
      if (!(chain[i].checkIssued(issuer) && chain[i].verify(issuer.publicKey))) return { verified: false };
    }
    const [h, p, s] = compact.split('.');
    const ok = crypto.verify('sha256', Buffer.from(h + '.' + p), { key: chain[0].publicKey, dsaEncoding: 'ieee-p1363' }, Buffer.from(s, 'base64url'));
    return ok ? { verified: true, signerJwk: chain[0].publicKey.export({ format: 'jwk' }) } : { verified: false };
  },
  getX509CertificateMetadata: () => ({ sanDnsNames: [], sanUriNames: [] }),
  encryptJwe: async (encryptor, data) => {
    const key = await jose.importJWK(encryptor.publicJwk, encryptor.alg);
    const enc = new jose.CompactEncrypt(new TextEncoder().encode(data))
      .setProtectedHeader({ alg: encryptor.alg, enc: encryptor.enc, kid: encryptor.publicJwk.kid });
    const params = {};
    if (encryptor.apu) params.apu = Buffer.from(encryptor.apu, 'base64url');
    if (encryptor.apv) params.apv = Buffer.from(encryptor.apv, 'base64url');
    enc.setKeyManagementParameters(params);
    return { encryptionJwk: encryptor.publicJwk, jwe: await enc.encrypt(key) };
  },
};
const wallet = new Openid4vpClient({ callbacks });
const serverMetadata = { authorization_encryption_alg_values_supported: ['ECDH-ES'], authorization_encryption_enc_values_supported: ['A128GCM', 'A256GCM'] };

function sdjwt(holderJwk, signer) {
  const holderKey = holderJwk && crypto.createPrivateKey({ key: holderJwk, format: 'jwk' });
  return new SDJwtVcInstance({
    hasher: (data, alg) => { assert(alg === 'sha-256', `hash ${alg}`); return sha256(data); },
    hashAlg: 'sha-256',
    saltGenerator: () => b64u(crypto.randomBytes(16)),
    signer, signAlg: 'ES256', kbSignAlg: 'ES256',
    kbSigner: holderKey ? (data) => b64u(crypto.sign('sha256', Buffer.from(data), { key: holderKey, dsaEncoding: 'ieee-p1363' })) : undefined,
  });
}

// frame is the presentation frame of a DCQL query's claim paths: the wallet discloses exactly those.
function frame(dcql) {
  const f = {};
  for (const c of dcql.credentials[0].claims || []) {
    let o = f;
    c.path.forEach((p, i) => { if (i === c.path.length - 1) o[p] = true; else o = (o[p] ||= {}); });
  }
  return f;
}

// present resolves the deep link with the library, presents credential with the asked claims
// (tamper may change the presentation or the key binding) and posts the response.
async function present(deepLink, credential, holderJwk, tamper = {}) {
  const request = wallet.parseOpenid4vpAuthorizationRequest({ authorizationRequest: deepLink });
  const resolved = await wallet.resolveOpenId4vpAuthorizationRequest({ authorizationRequestPayload: request.params });
  const req = resolved.authorizationRequestPayload;
  assert(resolved.client.prefix === 'x509_hash' && req.client_id.startsWith('x509_hash:'), `client ${JSON.stringify(resolved.client)}`);
  assert(resolved.dcql, 'no dcql_query in the request');
  const kb = { iat: Math.floor(Date.now() / 1000), aud: req.client_id, nonce: req.nonce, ...(tamper.kb || {}) };
  let vp = await sdjwt(holderJwk).present(credential, frame(resolved.dcql.query), { kb: { payload: kb } });
  if (tamper.presentation) vp = tamper.presentation(vp);
  const id = resolved.dcql.query.credentials[0].id;
  const response = await wallet.createOpenid4vpAuthorizationResponse({ authorizationRequestPayload: req,
    authorizationResponsePayload: { vp_token: { [id]: [vp] } },
    jarm: req.response_mode === 'direct_post.jwt' ? { encryption: {}, serverMetadata } : undefined });
  const submitted = await wallet.submitOpenid4vpAuthorizationResponse({ authorizationRequestPayload: req,
    authorizationResponsePayload: response.authorizationResponsePayload, jarm: response.jarm });
  const body = await submitted.response.json().catch(() => ({}));
  return { status: submitted.response.status, body, req, response, vp };
}

const holder = state.holders[0];
const pid = state.credentials[0];

// refused runs one negative case: the wallet gets a 4xx and the relying party a refusal naming want.
async function refused(dcql, credential, holderJwk, want, tamper) {
  const tx = await askVula(dcql, 'direct_post.jwt');
  const p = await present(tx.deep_link, credential, holderJwk, tamper);
  assert(p.status === 400 && p.body.error === 'invalid_request', `the wallet was answered ${p.status} ${JSON.stringify(p.body)}`);
  const r = await result(tx);
  assert(r.status === 200 && r.body.status === 'refused', `result ${JSON.stringify(r.body)}`);
  assert(new RegExp(want).test(r.body.reason), `reason "${r.body.reason}" does not name ${want}`);
  for (const c of r.body.credentials || []) assert(!c.claims, 'a refused presentation gave claims');
  return r.body;
}

// outside issues an SD-JWT VC by an outside issuer (its key and x5c from the Go test), bound to a new holder key.
async function outside(keyPem, x5c, exp) {
  const key = crypto.createPrivateKey(keyPem);
  const h = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const signer = (data) => b64u(crypto.sign('sha256', Buffer.from(data), { key, dsaEncoding: 'ieee-p1363' }));
  const now = Math.floor(Date.now() / 1000);
  const cred = await sdjwt(undefined, signer).issue({ iss: 'https://outside.example', vct: 'urn:eudi:pid:1', iat: now - 7200, exp,
    cnf: { jwk: h.publicKey.export({ format: 'jwk' }) }, family_name: env.WALLET_FAMILY, birthdate: env.WALLET_BIRTHDATE },
  { _sd: ['family_name', 'birthdate'] }, { header: { x5c: x5c.split(',') } });
  return { cred, holderJwk: h.privateKey.export({ format: 'jwk' }) };
}

if (env.PRESENT_MODE === 'valid') {
  let accepted;
  await run('direct_post.jwt: family name and birth date, only those, trusted, valid, key bound', async () => {
    const dcql = pidQuery(['family_name'], ['birthdate']);
    const tx = await askVula(dcql, 'direct_post.jwt', { redirect_uri: 'https://rp.example/done', state: 'rp-42' });
    assert(tx.deep_link.startsWith('openid4vp://?') && tx.haip_link.startsWith('haip-vp://?') && tx.client_id.startsWith('x509_hash:'), `links ${JSON.stringify(tx)}`);
    assert((await result(tx)).body.status === 'pending', 'not pending before the wallet answered');
    const p = await present(tx.deep_link, pid, holder);
    assert(p.req.response_mode === 'direct_post.jwt' && p.response.jarm, 'not an encrypted response');
    assert(p.status === 200, `the response endpoint answered ${p.status} ${JSON.stringify(p.body)}`);
    const back = new URL(p.body.redirect_uri);
    assert(back.origin + back.pathname === 'https://rp.example/done' && back.searchParams.get('state') === 'rp-42' && back.searchParams.get('response_code'),
      `redirect_uri ${p.body.redirect_uri}`);
    const disclosed = p.vp.split('~').slice(1, -1).map((d) => decodePart(d)[1]).sort();
    assert(JSON.stringify(disclosed) === '["birthdate","family_name"]', `the wallet disclosed ${disclosed}`);
    const r = await result(tx);
    assert(r.body.status === 'accepted' && r.body.response_code === back.searchParams.get('response_code'), `result ${JSON.stringify(r.body)}`);
    const c = r.body.credentials[0];
    assert(c.trust === 'trusted' && c.status === 'valid' && c.key_binding === 'ok' && /PID issuer/.test(c.issuer), `credential ${JSON.stringify(c)}`);
    assert(JSON.stringify(c.claims) === JSON.stringify([{ path: ['family_name'], value: env.WALLET_FAMILY }, { path: ['birthdate'], value: env.WALLET_BIRTHDATE }]),
      `claims ${JSON.stringify(c.claims)}`);
    accepted = { tx, p };
  });
  await run('direct_post: age over 18 only', async () => {
    const tx = await askVula(pidQuery(['age_equal_or_over', '18']), 'direct_post');
    const p = await present(tx.deep_link, state.credentials[1], state.holders[1]);
    assert(p.req.response_mode === 'direct_post' && !p.response.jarm, 'not a plain direct_post');
    assert(p.status === 200 && JSON.stringify(p.body) === '{}', `the response endpoint answered ${p.status} ${JSON.stringify(p.body)}`);
    const r = await result(tx);
    const c = r.body.credentials[0];
    assert(r.body.status === 'accepted' && c.trust === 'trusted' && c.status === 'valid' && c.key_binding === 'ok', `result ${JSON.stringify(r.body)}`);
    assert(JSON.stringify(c.claims) === JSON.stringify([{ path: ['age_equal_or_over', '18'], value: true }]), `claims ${JSON.stringify(c.claims)}`);
  });
  await run('mso_mdoc, direct_post.jwt: @animo-id/mdoc presents family name and age over 18, only those, device signed', async () => {
    const PID = 'eu.europa.ec.eudi.pid.1';
    const tx = await askVula({ credentials: [{ id: 'pid', format: 'mso_mdoc', meta: { doctype_value: PID },
      claims: [{ path: [PID, 'family_name'] }, { path: [PID, 'age_over_18'] }] }] }, 'direct_post.jwt');
    const request = wallet.parseOpenid4vpAuthorizationRequest({ authorizationRequest: tx.deep_link });
    const resolved = await wallet.resolveOpenId4vpAuthorizationRequest({ authorizationRequestPayload: request.params });
    const req = resolved.authorizationRequestPayload;
    // OpenID4VP 1.0 Appendix B.2.6.1: the handover names the key the response is encrypted to.
    const encJwk = req.client_metadata.jwks.keys[0];
    const jkt = Buffer.from(await jose.calculateJwkThumbprint(encJwk, 'sha256'), 'base64url');
    const info = sha256(cborEncode([req.client_id, req.nonce, new Uint8Array(jkt), req.response_uri]));
    const transcript = cborEncode(DataItem.fromData([null, null, ['OpenID4VPHandover', info]]));
    const doc = parseIssuerSigned(new Uint8Array(Buffer.from(state.mdoc.credential, 'base64url')), PID);
    const fields = resolved.dcql.query.credentials[0].claims.map((c) => ({ path: [`$['${c.path[0]}']['${c.path[1]}']`], intent_to_retain: false }));
    const ctx = { crypto: { random: (n) => new Uint8Array(crypto.randomBytes(n)), digest: ({ bytes }) => sha256(bytes),
      calculateEphemeralMacKeyJwk: () => { throw new Error('not used'); } },
    cose: { sign1: { sign: ({ sign1, jwk }) => new Uint8Array(crypto.sign('sha256', Buffer.from(sign1.getRawSigningData().data),
      { key: crypto.createPrivateKey({ key: jwk, format: 'jwk' }), dsaEncoding: 'ieee-p1363' })), verify: () => { throw new Error('not used'); } },
    mac0: { sign: () => { throw new Error('not used'); }, verify: () => { throw new Error('not used'); } } } };
    const signed = await DeviceResponse.from(new MDoc([doc]))
      .usingPresentationDefinition({ id: 'pid', input_descriptors: [{ id: PID, format: { mso_mdoc: { alg: ['ES256'] } },
        constraints: { limit_disclosure: 'required', fields } }] })
      .usingSessionTranscriptBytes(transcript)
      .authenticateWithSignature(state.mdoc.key, 'ES256')
      .sign(ctx);
    const vp = Buffer.from(signed.encode()).toString('base64url');
    const response = await wallet.createOpenid4vpAuthorizationResponse({ authorizationRequestPayload: req,
      authorizationResponsePayload: { vp_token: { pid: [vp] } }, jarm: { encryption: {}, serverMetadata } });
    const submitted = await wallet.submitOpenid4vpAuthorizationResponse({ authorizationRequestPayload: req,
      authorizationResponsePayload: response.authorizationResponsePayload, jarm: response.jarm });
    const body = await submitted.response.json().catch(() => ({}));
    assert(submitted.response.status === 200, `the response endpoint answered ${submitted.response.status} ${JSON.stringify(body)}`);
    const r = await result(tx);
    const c = r.body.credentials && r.body.credentials[0];
    assert(r.body.status === 'accepted' && c.trust === 'trusted' && c.status === 'valid' && c.key_binding === 'ok' && c.doctype === PID,
      `result ${JSON.stringify(r.body)}`);
    assert(JSON.stringify(c.claims) === JSON.stringify([{ path: [PID, 'family_name'], value: env.WALLET_FAMILY }, { path: [PID, 'age_over_18'], value: true }]),
      `claims ${JSON.stringify(c.claims)}`);
  });
  await run('the result fetched by another client is 404', async () => {
    const r = await result(accepted.tx, rp2Token);
    assert(r.status === 404, `another client got ${r.status} ${JSON.stringify(r.body)}`);
  });
  await run('a replayed response is refused and changes nothing', async () => {
    const body = 'response=' + accepted.p.response.jarm.responseJwt;
    const r = await fetch(accepted.p.req.response_uri, { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body });
    assert(r.status === 400, `replay answered ${r.status}`);
    assert((await result(accepted.tx)).body.status === 'accepted', 'the replay changed the result');
  });
  await run('a presentation for another verifier (audience) is refused', () =>
    refused(pidQuery(['family_name']), pid, holder, 'aud', { kb: { aud: 'x509_hash:' + b64u(sha256('another verifier')) } }));
  await run('a wrong nonce is refused', () => refused(pidQuery(['family_name']), pid, holder, 'nonce', { kb: { nonce: 'not-the-nonce' } }));
  await run('a reused nonce (another transaction\'s presentation) is refused', () =>
    refused(pidQuery(['family_name'], ['birthdate']), pid, holder, 'nonce', { presentation: () => accepted.p.vp }));
  await run('the verifier refuses a tampered disclosure', () => refused(pidQuery(['family_name']), pid, holder, 'disclosure', { presentation: (vp) => {
    const parts = vp.split('~');
    const d = decodePart(parts[1]);
    d[2] = 'Someone Else';
    parts[1] = b64u(JSON.stringify(d));
    return parts.join('~');
  } }));
  await run('a query for a claim the credential lacks is refused', () => refused(pidQuery(['email']), pid, holder, 'email'));
  await run('an expired credential (under a trusted outside CA) is refused', async () => {
    const o = await outside(env.WALLET_OUTSIDE_KEY, env.WALLET_OUTSIDE_X5C, Math.floor(Date.now() / 1000) - 3600);
    await refused(pidQuery(['family_name']), o.cred, o.holderJwk, 'expired');
  });
  await run('the same outside CA\'s valid credential is accepted (wallet.verifier.trust_anchors)', async () => {
    const o = await outside(env.WALLET_OUTSIDE_KEY, env.WALLET_OUTSIDE_X5C, Math.floor(Date.now() / 1000) + 3600);
    const tx = await askVula(pidQuery(['family_name']), 'direct_post.jwt');
    const p = await present(tx.deep_link, o.cred, o.holderJwk);
    assert(p.status === 200, `answered ${p.status} ${JSON.stringify(p.body)}`);
    const c = (await result(tx)).body.credentials[0];
    assert(c.trust === 'trusted' && c.status === 'none' && /Outside/.test(c.issuer), `credential ${JSON.stringify(c)}`);
  });
  await run('an issuer under a CA not in the trust anchors is refused', async () => {
    const o = await outside(env.WALLET_STRANGER_KEY, env.WALLET_STRANGER_X5C, Math.floor(Date.now() / 1000) + 3600);
    await refused(pidQuery(['family_name']), o.cred, o.holderJwk, 'not trusted');
  });
  await run('a bad DCQL query gets a 400 problem naming why', async () => {
    for (const [q, want] of [[{ credentials: [{ id: 'a', format: 'ldp_vc', meta: {} }] }, 'unknown'],
      [{ credentials: [{ id: 'a', format: 'dc+sd-jwt', meta: { vct_values: ['x'] }, claims: [{ path: [] }] }] }, 'path']]) {
      const r = await fetch(base + '/api/v1/presentations', { method: 'POST', headers: { Authorization: 'Bearer ' + rpToken, 'Content-Type': 'application/json' },
        body: JSON.stringify({ dcql_query: q }) });
      const j = await r.json();
      assert(r.status === 400 && r.headers.get('content-type').startsWith('application/problem+json') && j.detail.includes(want), `${r.status} ${JSON.stringify(j)}`);
    }
  });
} else {
  await run('after vula pid revoke: the presentation is refused for its status', async () => {
    const body = await refused(pidQuery(['family_name']), state.credentials[2], state.holders[2], 'status');
    assert(body.credentials[0].status === 'invalid', `status ${body.credentials[0].status}`);
  });
}
