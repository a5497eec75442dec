// Wallet suite: third-party wallet libraries against the real vula binary (test/wallet_test.go
// starts it behind a TLS proxy and runs this script). Each case prints one JSON line
// {"case", "ok", "error", "ms"}.
//
//   @openid4vc/openid4vci  the wallet: resolves the offer and the metadata, redeems the
//                          pre-authorized code with the transaction code, asks for a nonce and a
//                          batch of credentials with one proof key each
//   @sd-jwt/sd-jwt-vc      verifies each SD-JWT VC: signature by the x5c leaf (whose chain this
//                          script checks up to Vula's root), disclosures, status, key binding
//   @sd-jwt/jwt-status-list reads the status list token
//   @animo-id/mdoc         parses the mdoc PID and verifies its issuer signature, certificate
//                          chain (to Vula's root) and every element's digest in the MSO
//
// WALLET_MODE=issue gets and checks credentials (pre-authorized code, the offer by reference,
// a DPoP-bound token) and saves them to WALLET_STATE; WALLET_MODE=revoked reads them back after
// `vula pid revoke` and expects them revoked; WALLET_MODE=code-start pushes an authorization
// request (PAR, PKCE, DPoP, authorization_details) and saves its URL for the test, which logs the
// citizen in; WALLET_MODE=code-finish redeems the code from WALLET_CALLBACK and gets the PID.
import crypto from 'node:crypto';
import fs from 'node:fs';
import { Openid4vciClient } from '@openid4vc/openid4vci';
import { clientAuthenticationNone, HashAlgorithm, resourceRequest } from '@openid4vc/oauth2';
import { SDJwtVcInstance } from '@sd-jwt/sd-jwt-vc';
import { getListFromStatusListJWT } from '@sd-jwt/jwt-status-list';
import { parseIssuerSigned, Verifier } from '@animo-id/mdoc';
import { run, assert, b64u, decodePart, mdocContext } from './common.mjs';

const env = process.env;
const mode = env.WALLET_MODE || 'issue';
const sdjwtConfig = 'eu.europa.ec.eudi.pid.1.dc+sd-jwt';
const root = new crypto.X509Certificate(fs.readFileSync(env.WALLET_ROOT));

// The holder's keys: P-256, as HAIP asks.
function newKey() {
  const { privateKey, publicKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { privateKey, publicJwk: publicKey.export({ format: 'jwk' }), privateJwk: privateKey.export({ format: 'jwk' }) };
}

function signES256(privateKey, header, payload) {
  const input = b64u(JSON.stringify(header)) + '.' + b64u(JSON.stringify(payload));
  const sig = crypto.sign('sha256', Buffer.from(input), { key: privateKey, dsaEncoding: 'ieee-p1363' });
  return input + '.' + b64u(sig);
}

// The issuer's key: the x5c leaf, accepted only when its chain ends at Vula's root.
function x5cKey(header) {
  assert(Array.isArray(header.x5c) && header.x5c.length > 0, 'no x5c in the header');
  const chain = header.x5c.map((c) => new crypto.X509Certificate(Buffer.from(c, 'base64')));
  for (let i = 0; i < chain.length; i++) {
    const issuer = i + 1 < chain.length ? chain[i + 1] : root;
    assert(chain[i].checkIssued(issuer) && chain[i].verify(issuer.publicKey), `x5c[${i}] is not issued by ${issuer.subject}`);
    const now = new Date();
    assert(new Date(chain[i].validFrom) <= now && now <= new Date(chain[i].validTo), `x5c[${i}] is not valid now`);
  }
  return chain[0].publicKey;
}

function verifyJws(data, sig) {
  const header = decodePart(data.split('.')[0]);
  return crypto.verify('sha256', Buffer.from(data), { key: x5cKey(header), dsaEncoding: 'ieee-p1363' }, Buffer.from(sig, 'base64url'));
}

const hasher = (data, alg) => {
  assert(alg === 'sha-256', `hash ${alg}`);
  return new Uint8Array(crypto.createHash('sha256').update(data).digest());
};

function sdjwt(holder) {
  return new SDJwtVcInstance({
    hasher,
    hashAlg: 'sha-256',
    saltGenerator: () => b64u(crypto.randomBytes(16)),
    verifier: verifyJws,
    signAlg: 'ES256',
    kbSignAlg: 'ES256',
    kbSigner: holder ? (data) => b64u(crypto.sign('sha256', Buffer.from(data), { key: holder.privateKey, dsaEncoding: 'ieee-p1363' })) : undefined,
    kbVerifier: (data, sig, payload) => {
      const jwk = payload.cnf.jwk;
      const key = crypto.createPublicKey({ key: jwk, format: 'jwk' });
      return crypto.verify('sha256', Buffer.from(data), { key, dsaEncoding: 'ieee-p1363' }, Buffer.from(sig, 'base64url'));
    },
  });
}

const callbacks = {
  hash: (data, alg) => {
    assert(alg === HashAlgorithm.Sha256, `hash ${alg}`);
    return new Uint8Array(crypto.createHash('sha256').update(data).digest());
  },
  generateRandom: (n) => new Uint8Array(crypto.randomBytes(n)),
  clientAuthentication: clientAuthenticationNone({ clientId: 'vula-wallet-suite' }),
  fetch,
  signJwt: async (signer, { header, payload }) => {
    const key = keysByThumb.get(signer.publicJwk.x);
    assert(key, 'signJwt: no such key');
    return { jwt: signES256(key.privateKey, header, payload), signerJwk: signer.publicJwk };
  },
};
const keysByThumb = new Map();

if (mode === 'issue') {
  const client = new Openid4vciClient({ callbacks });
  let offer, metadata, token, dpop, credentials = [], holders = [], mdoc;
  await run('resolve the offer by reference (credential_offer_uri) and the issuer metadata', async () => {
    assert(new URL(env.WALLET_OFFER).searchParams.has('credential_offer_uri'), 'the offer is not by reference');
    offer = await client.resolveCredentialOffer(env.WALLET_OFFER);
    metadata = await client.resolveIssuerMetadata(offer.credential_issuer);
    assert(metadata.credentialIssuer.credential_issuer === env.WALLET_ISSUER, 'credential_issuer');
    assert(metadata.credentialIssuer.nonce_endpoint, 'no nonce_endpoint');
  });
  await run('pre-authorized code with the transaction code, the token DPoP-bound', async () => {
    const k = newKey();
    keysByThumb.set(k.publicJwk.x, k);
    const r = await client.retrievePreAuthorizedCodeAccessTokenFromOffer({ credentialOffer: offer, issuerMetadata: metadata, txCode: env.WALLET_TX,
      dpop: { signer: { method: 'jwk', alg: 'ES256', publicJwk: k.publicJwk } } });
    token = r.accessTokenResponse.access_token;
    dpop = r.dpop;
    assert(token, 'no access token');
    assert(r.accessTokenResponse.token_type === 'DPoP', `token_type ${r.accessTokenResponse.token_type}`);
    assert(dpop && dpop.nonce, 'no DPoP nonce from the token endpoint');
  });
  await run('the offer by reference is gone once redeemed', async () => {
    const resp = await fetch(new URL(env.WALLET_OFFER).searchParams.get('credential_offer_uri'));
    assert(resp.status === 404, `a redeemed offer is served: ${resp.status}`);
  });
  await run('the bound token without a DPoP proof is refused', async () => {
    const resp = await fetch(metadata.credentialIssuer.credential_endpoint, { method: 'POST',
      headers: { Authorization: 'Bearer ' + token, 'Content-Type': 'application/json' },
      body: JSON.stringify({ credential_configuration_id: offer.credential_configuration_ids[0] }) });
    assert(resp.status === 401 && /^DPoP /.test(resp.headers.get('www-authenticate') || ''), `as a bearer token: ${resp.status}`);
  });
  await run('batch of credentials, one proof key each', async () => {
    const { c_nonce } = await client.requestNonce({ issuerMetadata: metadata });
    const configId = offer.credential_configuration_ids[0];
    const proofs = [];
    for (let i = 0; i < 3; i++) {
      const k = newKey();
      keysByThumb.set(k.publicJwk.x, k);
      holders.push(k);
      const { jwt } = await client.createCredentialRequestJwtProof({ issuerMetadata: metadata, credentialConfigurationId: configId,
        signer: { method: 'jwk', alg: 'ES256', publicJwk: k.publicJwk }, nonce: c_nonce });
      proofs.push(jwt);
    }
    const r = await client.retrieveCredentials({ issuerMetadata: metadata, accessToken: token, dpop, credentialConfigurationId: configId,
      proofs: { jwt: proofs } });
    credentials = r.credentialResponse.credentials.map((c) => c.credential);
    assert(credentials.length === 3, `${credentials.length} credentials for 3 proofs`);
  });
  await run('the same nonce again is refused', async () => {
    const configId = offer.credential_configuration_ids[0];
    const k = newKey();
    keysByThumb.set(k.publicJwk.x, k);
    const { c_nonce } = await client.requestNonce({ issuerMetadata: metadata });
    const { jwt: proof } = await client.createCredentialRequestJwtProof({ issuerMetadata: metadata, credentialConfigurationId: configId,
      signer: { method: 'jwk', alg: 'ES256', publicJwk: k.publicJwk }, nonce: c_nonce });
    await client.retrieveCredentials({ issuerMetadata: metadata, accessToken: token, dpop, credentialConfigurationId: configId, proofs: { jwt: [proof] } });
    let refused = false;
    try {
      await client.retrieveCredentials({ issuerMetadata: metadata, accessToken: token, dpop, credentialConfigurationId: configId, proofs: { jwt: [proof] } });
    } catch (e) {
      refused = /invalid_nonce/.test(JSON.stringify(e.errorResponse || e.message));
    }
    assert(refused, 'a replayed proof was accepted');
  });
  await run('mdoc: issued by the same flow, verified by @animo-id/mdoc', async () => {
    const { c_nonce } = await client.requestNonce({ issuerMetadata: metadata });
    const configId = 'eu.europa.ec.eudi.pid.1.mso_mdoc';
    assert(offer.credential_configuration_ids.includes(configId), 'the offer lacks the mdoc');
    const k = newKey();
    keysByThumb.set(k.publicJwk.x, k);
    const { jwt } = await client.createCredentialRequestJwtProof({ issuerMetadata: metadata, credentialConfigurationId: configId,
      signer: { method: 'jwk', alg: 'ES256', publicJwk: k.publicJwk }, nonce: c_nonce });
    const r = await client.retrieveCredentials({ issuerMetadata: metadata, accessToken: token, dpop, credentialConfigurationId: configId,
      proofs: { jwt: [jwt] } });
    const doc = parseIssuerSigned(new Uint8Array(Buffer.from(r.credentialResponse.credentials[0].credential, 'base64url')), 'eu.europa.ec.eudi.pid.1');
    mdoc = { credential: r.credentialResponse.credentials[0].credential, key: k.privateJwk };
    const failed = [];
    const onCheckG = (c) => { if (c.status !== 'PASSED') failed.push(`${c.check}: ${c.reason || c.status}`); };
    const verifier = new Verifier();
    await verifier.verifyIssuerSignature({ trustedCertificates: [new Uint8Array(fs.readFileSync(env.WALLET_ROOT))],
      issuerAuth: doc.issuerSigned.issuerAuth, disableCertificateChainValidation: false, onCheckG }, mdocContext);
    await verifier.verifyData({ mdoc: doc, onCheckG }, mdocContext);
    assert(failed.length === 0, `mdoc checks failed: ${failed.join('; ')}`);
    const ns = doc.getIssuerNameSpace('eu.europa.ec.eudi.pid.1');
    assert(ns.get('family_name') === env.WALLET_FAMILY && ns.get('age_over_18') === true, 'mdoc elements');
    const mso = doc.issuerSigned.issuerAuth.decodedPayload;
    assert(mso.docType === 'eu.europa.ec.eudi.pid.1', `docType ${mso.docType}`);
  });
  await run('sd-jwt-vc verifies each credential, its status and its binding', async () => {
    for (let i = 0; i < credentials.length; i++) {
      const v = await sdjwt().verify(credentials[i]);
      const p = v.payload;
      assert(p.vct === 'urn:eudi:pid:1', `vct ${p.vct}`);
      assert(p.iss === env.WALLET_ISSUER, `iss ${p.iss}`);
      assert(p.family_name === env.WALLET_FAMILY && p.given_name === env.WALLET_GIVEN, `names ${p.family_name} ${p.given_name}`);
      assert(p.birthdate === env.WALLET_BIRTHDATE, `birthdate ${p.birthdate}`);
      assert(p.personal_administrative_number === env.WALLET_NUMBER, 'personal_administrative_number');
      assert(p.age_equal_or_over && p.age_equal_or_over['18'] === true, 'age_equal_or_over.18');
      assert(p.cnf.jwk.x === holders[i].publicJwk.x, `credential ${i} is not bound to proof key ${i}`);
      assert(p.status.status_list.uri.startsWith(env.WALLET_ISSUER + '/pid/status/'), 'status uri');
    }
    const idx = credentials.map((c) => decodePart(c.split('~')[0].split('.')[1]).status.status_list.idx);
    assert(new Set(idx).size === idx.length, 'credentials of a batch share a status index');
  });
  await run('every claim is selectively disclosable', async () => {
    const inst = sdjwt();
    const keys = await inst.keys(credentials[0]);
    const presentable = await inst.presentableKeys(credentials[0]);
    for (const k of ['family_name', 'given_name', 'birthdate', 'nationalities', 'personal_administrative_number', 'issuing_authority',
      'issuing_country', 'date_of_issuance', 'date_of_expiry', 'age_equal_or_over', 'age_equal_or_over.18']) {
      assert(keys.includes(k), `no claim ${k}`);
      assert(presentable.includes(k), `claim ${k} is not disclosable`);
    }
  });
  await run('a presentation of given_name only, with key binding', async () => {
    const inst = sdjwt(holders[0]);
    const presented = await inst.present(credentials[0], { given_name: true },
      { kb: { payload: { iat: Math.floor(Date.now() / 1000), aud: 'https://verifier.example', nonce: 'n-123' } } });
    const v = await sdjwt().verify(presented, { keyBindingNonce: 'n-123' });
    assert(v.payload.given_name === env.WALLET_GIVEN, 'given_name not disclosed');
    assert(v.payload.family_name === undefined && v.payload.birthdate === undefined, 'more than given_name disclosed');
    assert(v.kb && v.kb.payload.nonce === 'n-123', 'no key binding');
  });
  await run('a tampered disclosure is refused', async () => {
    const parts = credentials[0].split('~');
    const i = parts.findIndex((d, j) => j > 0 && d && decodePart(d)[1] === 'family_name');
    const d = decodePart(parts[i]);
    d[2] = 'Someone Else';
    parts[i] = b64u(JSON.stringify(d));
    let refused = false;
    try {
      const v = await sdjwt().verify(parts.join('~'));
      refused = v.payload.family_name !== 'Someone Else';
    } catch (e) {
      refused = true;
    }
    assert(refused, 'a changed disclosure was accepted');
  });
  await run('jwt-status-list reads the list: not revoked', async () => {
    for (const c of credentials) {
      const sl = decodePart(c.split('~')[0].split('.')[1]).status.status_list;
      const resp = await fetch(sl.uri, { headers: { Accept: 'application/statuslist+jwt' } });
      assert(resp.ok && resp.headers.get('content-type') === 'application/statuslist+jwt', `status list: ${resp.status}`);
      assert(/max-age=\d+/.test(resp.headers.get('cache-control') || ''), 'status list without max-age');
      const jwt = await resp.text();
      const [h, , s] = jwt.split('.');
      assert(decodePart(h).typ === 'statuslist+jwt', 'typ');
      assert(verifyJws(jwt.split('.').slice(0, 2).join('.'), s), 'status list signature');
      assert(getListFromStatusListJWT(jwt).getStatus(sl.idx) === 0, 'fresh credential shows revoked');
    }
  });
  // The holder keys too: present.mjs presents the credentials with key binding.
  fs.writeFileSync(env.WALLET_STATE, JSON.stringify({ credentials, holders: holders.map((h) => h.privateJwk), mdoc }));
} else if (mode === 'code-start') {
  // The authorization code flow, as a wallet starts it on its own (no offer from the issuer):
  // PAR with PKCE, a DPoP key (its proof at PAR binds the code), and authorization_details of
  // type openid_credential. The test logs the citizen in and hands the redirect back.
  const client = new Openid4vciClient({ callbacks: { ...callbacks, clientAuthentication: clientAuthenticationNone({ clientId: env.WALLET_CLIENT }) } });
  await run('authorization code: PAR, PKCE, DPoP and authorization_details', async () => {
    const metadata = await client.resolveIssuerMetadata(env.WALLET_ISSUER);
    const asMeta = metadata.authorizationServers.find((a) => a.issuer === env.WALLET_ISSUER);
    assert(asMeta && asMeta.pushed_authorization_request_endpoint, 'the identity provider has no PAR endpoint');
    assert((asMeta.authorization_details_types_supported || []).includes('openid_credential'), 'openid_credential is not advertised');
    assert((asMeta.dpop_signing_alg_values_supported || []).includes('ES256'), 'DPoP ES256 is not advertised');
    const offer = { credential_issuer: env.WALLET_ISSUER, credential_configuration_ids: [sdjwtConfig],
      grants: { authorization_code: { authorization_server: env.WALLET_ISSUER } } };
    const k = newKey();
    keysByThumb.set(k.publicJwk.x, k);
    const r = await client.initiateAuthorization({ credentialOffer: offer, issuerMetadata: metadata, clientId: env.WALLET_CLIENT,
      redirectUri: env.WALLET_REDIRECT, dpop: { signer: { method: 'jwk', alg: 'ES256', publicJwk: k.publicJwk } },
      additionalRequestPayload: { state: 'wallet-' + b64u(crypto.randomBytes(8)),
        authorization_details: [{ type: 'openid_credential', credential_configuration_id: sdjwtConfig }] } });
    assert(r.authorizationRequestUrl && /request_uri=/.test(r.authorizationRequestUrl), `not pushed: ${r.authorizationRequestUrl}`);
    assert(r.pkce && r.pkce.codeVerifier, 'no PKCE');
    fs.writeFileSync(env.WALLET_STATE, JSON.stringify({ url: r.authorizationRequestUrl, verifier: r.pkce.codeVerifier, dpopKey: k.privateJwk }));
  });
} else if (mode === 'code-finish') {
  const client = new Openid4vciClient({ callbacks: { ...callbacks, clientAuthentication: clientAuthenticationNone({ clientId: env.WALLET_CLIENT }) } });
  const state = JSON.parse(fs.readFileSync(env.WALLET_STATE));
  const privateKey = crypto.createPrivateKey({ key: state.dpopKey, format: 'jwk' });
  const dk = { privateKey, publicJwk: crypto.createPublicKey(privateKey).export({ format: 'jwk' }) };
  keysByThumb.set(dk.publicJwk.x, dk);
  const offer = { credential_issuer: env.WALLET_ISSUER, credential_configuration_ids: [sdjwtConfig],
    grants: { authorization_code: { authorization_server: env.WALLET_ISSUER } } };
  let metadata, token, dpop, identifier;
  await run('authorization code: the library redeems the code with its DPoP key', async () => {
    metadata = await client.resolveIssuerMetadata(env.WALLET_ISSUER);
    const cb = new URL(env.WALLET_CALLBACK);
    assert(cb.searchParams.get('iss') === env.WALLET_ISSUER, `iss ${cb.searchParams.get('iss')}`);
    const r = await client.retrieveAuthorizationCodeAccessTokenFromOffer({ issuerMetadata: metadata, credentialOffer: offer,
      authorizationCode: cb.searchParams.get('code'), pkceCodeVerifier: state.verifier, redirectUri: env.WALLET_REDIRECT,
      dpop: { signer: { method: 'jwk', alg: 'ES256', publicJwk: dk.publicJwk } } });
    token = r.accessTokenResponse.access_token;
    dpop = r.dpop;
    assert(r.accessTokenResponse.token_type === 'DPoP', `token_type ${r.accessTokenResponse.token_type}`);
    const details = r.accessTokenResponse.authorization_details;
    assert(Array.isArray(details) && details.length === 1 && details[0].type === 'openid_credential' &&
      details[0].credential_configuration_id === sdjwtConfig, `authorization_details ${JSON.stringify(details)}`);
    identifier = details[0].credential_identifiers[0];
    assert(identifier, 'no credential_identifiers');
  });
  await run('authorization code: the credential by credential_identifier, DPoP-bound', async () => {
    const { c_nonce } = await client.requestNonce({ issuerMetadata: metadata });
    const h = newKey();
    keysByThumb.set(h.publicJwk.x, h);
    const { jwt } = await client.createCredentialRequestJwtProof({ issuerMetadata: metadata, credentialConfigurationId: sdjwtConfig,
      signer: { method: 'jwk', alg: 'ES256', publicJwk: h.publicJwk }, nonce: c_nonce, clientId: env.WALLET_CLIENT });
    // The client's retrieveCredentials names credential_configuration_id only; the spec wants
    // credential_identifier after authorization_details, sent here through the library's own
    // DPoP-aware resource request.
    const send = (body) => resourceRequest({ callbacks, accessToken: token, dpop, url: metadata.credentialIssuer.credential_endpoint,
      requestOptions: { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) } });
    const wrong = await send({ credential_configuration_id: sdjwtConfig, proofs: { jwt: [jwt] } });
    assert(!wrong.ok && wrong.response.status === 400, `by configuration id after authorization_details: ${wrong.response.status}`);
    const r = await send({ credential_identifier: identifier, proofs: { jwt: [jwt] } });
    if (!r.ok) throw new Error(`credential: ${r.response.status} ${await r.response.text()}`);
    const body = await r.response.json();
    const v = await sdjwt().verify(body.credentials[0].credential);
    assert(v.payload.family_name === env.WALLET_FAMILY && v.payload.cnf.jwk.x === h.publicJwk.x, 'the credential is not the person\'s or not bound');
  });
  await run('authorization code: the bound token without a proof is refused', async () => {
    const resp = await fetch(metadata.credentialIssuer.credential_endpoint, { method: 'POST',
      headers: { Authorization: 'DPoP ' + token, 'Content-Type': 'application/json' }, body: JSON.stringify({ credential_identifier: identifier }) });
    assert(resp.status === 401, `without a DPoP proof: ${resp.status}`);
  });
} else {
  const { credentials } = JSON.parse(fs.readFileSync(env.WALLET_STATE));
  await run('after vula pid revoke: sd-jwt-vc refuses the credentials', async () => {
    for (const c of credentials) {
      let refused = false;
      try {
        await sdjwt().verify(c);
      } catch (e) {
        refused = /Status is not valid/.test(String(e.message));
      }
      assert(refused, 'a revoked credential verified');
    }
  });
  await run('after vula pid revoke: jwt-status-list shows them revoked', async () => {
    for (const c of credentials) {
      const sl = decodePart(c.split('~')[0].split('.')[1]).status.status_list;
      const jwt = await (await fetch(sl.uri)).text();
      assert(getListFromStatusListJWT(jwt).getStatus(sl.idx) === 1, `index ${sl.idx} is not revoked`);
    }
  });
}
