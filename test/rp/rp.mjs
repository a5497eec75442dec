// Relying-party conformance suite (issue #15), run by test/rp_test.go against the real vula
// binary behind a TLS proxy.
//
// What it proves: openid-client (a certified OpenID Connect relying-party library) with its
// defaults — discovery, no hand-set audiences or algorithms, https only — completes against
// Vula: code flow with PKCE S256, state and nonce for a public client; client_secret_basic and
// (the library's default) client_secret_post with refresh, introspection and revocation;
// private_key_jwt (assertion aud = the issuer, the library's default) with PAR; signed request
// objects (JAR) alone and through PAR, and a forged one refused; RS256 ID tokens for a client
// registered for them; max_age=0 forcing a new login over a live session, prompt=none without
// one, prompt=login, prompt=consent, acr_values; ui_locales and login_hint on the login page;
// explicit response_mode=query; a request without state; RFC 9207 iss in every authorization
// response (the library checks it because discovery advertises it); access-token aud and
// RFC 8707 resource; introspection only for the token's own client or a resource server;
// RP-initiated logout; DPoP (RFC 9449) for a FAPI 2.0 client and for a public client; the
// claims parameter; pairwise subjects; client_credentials with its token at the admin API. A
// real Chromium (playwright-core, Debian's binary) types the citizen's password and consents.
//
// Each case is one async function in `cases`; adding one is adding a function. Each
// case prints one JSON line on stdout: {"case", "ok", "error", "ms"}; details go to stderr.
// RP_ONLY=name,name runs only those cases.

import assert from 'node:assert/strict'
import http from 'node:http'
import { readFile } from 'node:fs/promises'
import { webcrypto } from 'node:crypto'
import * as client from 'openid-client'
import { chromium } from 'playwright-core'

const env = (name) => {
  const v = process.env[name]
  if (!v) throw new Error(`${name} is not set (test/rp_test.go sets it)`)
  return v
}
const ISSUER = env('RP_ISSUER')
const CALLBACK = env('RP_CALLBACK')
const USER = env('RP_USER')
const PASSWORD = env('RP_PASSWORD')
const KEYS = env('RP_KEYS')

// discover configures a client the way the library's documentation does: the issuer's own
// discovery document, the client's id, and only the client metadata it was registered with.
const discover = (clientId, metadata, auth) => client.discovery(new URL(ISSUER), clientId, metadata, auth)

// signingKey reads the private JWK the Go test made for a private_key_jwt client.
async function signingKey(clientId) {
  const { kid, ...jwk } = JSON.parse(await readFile(`${KEYS}/${clientId}.jwk.json`, 'utf8'))
  delete jwk.use
  delete jwk.alg
  const key = await webcrypto.subtle.importKey('jwk', jwk, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign'])
  return { key, kid }
}

// signIn takes a browser page through Vula's pages (login, consent) to the redirect URI and
// returns the URL it landed on and which pages it saw on the way.
async function signIn(page, url) {
  const seen = []
  await page.goto(url.toString())
  for (let step = 0; step < 6; step++) {
    const here = page.url()
    if (here.startsWith(CALLBACK)) return { cb: new URL(here), seen }
    if (await page.locator('input[name=password]').count()) {
      seen.push('login')
      await page.fill('#identifier', USER)
      await page.fill('#password', PASSWORD)
      await Promise.all([page.waitForURL((u) => u.toString() !== here), page.click('form[action="/login"] button[type=submit]')])
    } else if (await page.locator('button[name=decision][value=allow]').count()) {
      seen.push('consent')
      await Promise.all([page.waitForURL((u) => u.toString() !== here), page.click('button[name=decision][value=allow]')])
    } else {
      const text = (await page.locator('body').innerText()).slice(0, 400)
      throw new Error(`stuck at ${here}: ${text}`)
    }
  }
  throw new Error(`no redirect to ${CALLBACK} after ${seen.join(', ')}`)
}

// authorize runs one authorization: fresh PKCE, state and nonce (a parameter given as
// undefined is left out), build makes the URL (plain, PAR or JAR), Chromium signs in, and the
// library redeems the code and validates everything it validates by default.
async function authorize(config, page, { build = client.buildAuthorizationUrl, params = {}, checks = {}, options } = {}) {
  const verifier = client.randomPKCECodeVerifier()
  const p = {
    redirect_uri: CALLBACK,
    scope: 'openid profile',
    code_challenge: await client.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state: client.randomState(),
    nonce: client.randomNonce(),
    ...params,
  }
  for (const k of Object.keys(p)) if (p[k] === undefined) delete p[k]
  const url = await build(config, p)
  const { cb, seen } = await signIn(page, url)
  const tokens = await client.authorizationCodeGrant(
    config, cb, { pkceCodeVerifier: verifier, expectedState: p.state, expectedNonce: p.nonce, ...checks }, undefined, options)
  return { tokens, cb, seen, url, verifier, params: p }
}

// describe names what the library threw: the OAuth error code (from the body or a
// WWW-Authenticate challenge) and its message, with the message of its cause.
function describe(e) {
  const challenge = Array.isArray(e.cause) ? e.cause.find((c) => c.parameters?.error)?.parameters.error : undefined
  const code = e.error ?? challenge
  return [code, e.status, e.message, e.cause?.message].filter(Boolean).join(': ')
}

// rejectsWith expects the library to throw: error is an OAuth error code, or a pattern its
// description must match.
async function rejectsWith(promise, error) {
  await assert.rejects(promise, (e) => {
    const d = describe(e)
    if (error instanceof RegExp ? error.test(d) : d.split(': ')[0] === error) return true
    throw new Error(`want ${error}, got ${d}`)
  })
}

const part = (jwt, i) => JSON.parse(Buffer.from(jwt.split('.')[i], 'base64url').toString())
const header = (jwt) => part(jwt, 0)
const payload = (jwt) => part(jwt, 1)

const cases = {
  // Discovery says what the provider does, and nothing it does not.
  async discovery() {
    const m = (await discover('rp-public')).serverMetadata()
    assert.equal(m.issuer, ISSUER)
    assert.deepEqual(m.response_types_supported, ['code'])
    assert.deepEqual(m.code_challenge_methods_supported, ['S256'])
    assert.deepEqual([...m.token_endpoint_auth_methods_supported].sort(), ['client_secret_basic', 'client_secret_post', 'none', 'private_key_jwt'])
    assert.ok(m.pushed_authorization_request_endpoint?.startsWith(ISSUER + '/'))
    assert.equal(m.request_parameter_supported, true)
    assert.ok(m.request_object_signing_alg_values_supported.includes('ES256'))
    assert.ok(!m.request_object_signing_alg_values_supported.includes('none'))
    assert.equal(m.authorization_response_iss_parameter_supported, true)
    for (const alg of ['ES256', 'RS256']) assert.ok(m.id_token_signing_alg_values_supported.includes(alg), alg)
    for (const ep of ['authorization_endpoint', 'token_endpoint', 'userinfo_endpoint', 'jwks_uri', 'revocation_endpoint', 'introspection_endpoint', 'end_session_endpoint']) {
      assert.ok(m[ep]?.startsWith(ISSUER + '/'), ep)
    }
    assert.ok(m.dpop_signing_alg_values_supported?.includes('ES256'))
    assert.equal(m.claims_parameter_supported, true)
    const jwks = await fetch(m.jwks_uri)
    assert.equal(jwks.status, 200)
  },

  // A public client: code + PKCE + state + nonce, userinfo, refresh with rotation.
  async publicClient(page) {
    const config = await discover('rp-public')
    const { tokens, cb, verifier, params } = await authorize(config, page)
    assert.equal(cb.searchParams.get('iss'), ISSUER) // RFC 9207
    assert.equal(tokens.token_type.toLowerCase(), 'bearer')
    const claims = tokens.claims()
    assert.equal(claims.iss, ISSUER)
    assert.ok(claims.sub)
    const info = await client.fetchUserInfo(config, tokens.access_token, claims.sub)
    assert.equal(info.given_name, 'Arta')
    assert.equal(info.family_name, 'Krasniqi')
    assert.ok(tokens.refresh_token, 'no refresh token for a public client')
    const next = await client.refreshTokenGrant(config, tokens.refresh_token)
    assert.notEqual(next.refresh_token, tokens.refresh_token)
    // A refreshed ID token keeps iss, sub, aud and the original auth_time (OIDC Core §12.2).
    const again = next.claims()
    assert.ok(again, 'no ID token at refresh')
    for (const c of ['iss', 'sub', 'aud', 'auth_time', 'acr']) assert.deepEqual(again[c], claims[c], c)
    if (again.nonce !== undefined) assert.equal(again.nonce, claims.nonce)
    await client.fetchUserInfo(config, next.access_token, claims.sub)
    await rejectsWith(client.refreshTokenGrant(config, tokens.refresh_token), 'invalid_grant')

    // A code is redeemed once, and a second attempt revokes what the first one gave (RFC 6749
    // §4.1.2): the latest access token no longer opens userinfo, the refresh token is dead.
    await rejectsWith(client.authorizationCodeGrant(config, cb, { pkceCodeVerifier: verifier, expectedState: params.state, expectedNonce: params.nonce }), 'invalid_grant')
    await rejectsWith(client.fetchUserInfo(config, next.access_token, claims.sub), 'invalid_token')
    await rejectsWith(client.refreshTokenGrant(config, next.refresh_token), 'invalid_grant')
  },

  // client_secret_basic: code flow, refresh, introspection of its own tokens, revocation.
  async clientSecretBasic(page) {
    const secret = env('RP_BASIC_SECRET')
    const config = await discover('rp-basic', secret, client.ClientSecretBasic())
    const { tokens } = await authorize(config, page)
    const sub = tokens.claims().sub
    const next = await client.refreshTokenGrant(config, tokens.refresh_token)
    const intro = await client.tokenIntrospection(config, next.access_token)
    assert.equal(intro.active, true)
    assert.equal(intro.client_id, 'rp-basic')
    assert.equal(intro.sub, sub)
    assert.equal((await client.tokenIntrospection(config, next.refresh_token)).active, true)

    await client.tokenRevocation(config, next.access_token)
    assert.equal((await client.tokenIntrospection(config, next.access_token)).active, false)
    await client.tokenRevocation(config, next.refresh_token)
    assert.equal((await client.tokenIntrospection(config, next.refresh_token)).active, false)
    await rejectsWith(client.refreshTokenGrant(config, next.refresh_token), 'invalid_grant')
  },

  // The same client configured with nothing but its secret: the library's default method,
  // client_secret_post (RFC 6749 §2.3.1), for the code, refresh, introspection and revocation.
  async clientSecretPostDefault(page) {
    const config = await discover('rp-basic', env('RP_BASIC_SECRET'))
    const { tokens } = await authorize(config, page)
    const next = await client.refreshTokenGrant(config, tokens.refresh_token)
    assert.equal((await client.tokenIntrospection(config, next.access_token)).active, true)
    await client.tokenRevocation(config, next.refresh_token)
    await rejectsWith(client.refreshTokenGrant(config, next.refresh_token), 'invalid_grant')
    // A wrong secret is 401 invalid_client (RFC 6749 §5.2).
    const wrong = await discover('rp-basic', 'not-the-secret')
    await assert.rejects(client.tokenIntrospection(wrong, next.access_token), (e) => e.status === 401 || assert.fail(describe(e)))
  },

  // private_key_jwt (the library's assertion, aud = issuer) with PAR, for a client that must use PAR.
  async privateKeyJwtPAR(page) {
    const config = await discover('rp-par', undefined, client.PrivateKeyJwt(await signingKey('rp-par')))
    const { tokens, url } = await authorize(config, page, { build: client.buildAuthorizationUrlWithPAR })
    assert.deepEqual([...url.searchParams.keys()].sort(), ['client_id', 'request_uri'])
    const next = await client.refreshTokenGrant(config, tokens.refresh_token)
    await client.fetchUserInfo(config, next.access_token, tokens.claims().sub)
    assert.equal((await client.tokenIntrospection(config, next.access_token)).active, true)

    // Without PAR this client is sent back with invalid_request, and the library says so.
    await rejectsWith(authorize(config, page), 'invalid_request')
  },

  // A signed request object (RFC 9101) by value at the authorization endpoint.
  async jar(page) {
    const key = await signingKey('rp-jar')
    const config = await discover('rp-jar', undefined, client.PrivateKeyJwt(key))
    const { tokens, url } = await authorize(config, page, { build: (c, p) => client.buildAuthorizationUrlWithJAR(c, p, key) })
    assert.deepEqual([...url.searchParams.keys()].sort(), ['client_id', 'request'])
    assert.ok(tokens.claims().sub)

    // An object signed by a key the client never registered is refused (RFC 9101 §6.3):
    // invalid_request_object, at the redirect URI or on Vula's own error page.
    const stranger = await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign', 'verify'])
    const verifier = client.randomPKCECodeVerifier()
    const forged = await client.buildAuthorizationUrlWithJAR(config, {
      redirect_uri: CALLBACK, scope: 'openid', code_challenge: await client.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256', state: client.randomState(),
    }, { key: stranger.privateKey, kid: key.kid })
    const res = await page.goto(forged.toString())
    if (page.url().startsWith(CALLBACK)) {
      assert.equal(new URL(page.url()).searchParams.get('error'), 'invalid_request_object')
    } else {
      assert.equal(res.status(), 400)
      assert.ok(!(await page.locator('input[name=password]').count()), 'a forged request object reached the login page')
    }
  },

  // A signed request object pushed with PAR.
  async jarThroughPAR(page) {
    const key = await signingKey('rp-par')
    const config = await discover('rp-par', undefined, client.PrivateKeyJwt(key))
    const build = async (c, p) => client.buildAuthorizationUrlWithPAR(c, (await client.buildAuthorizationUrlWithJAR(c, p, key)).searchParams)
    const { tokens } = await authorize(config, page, { build })
    await client.refreshTokenGrant(config, tokens.refresh_token)
  },

  // A client registered for RS256 ID tokens tells the library so; the tokens are RS256, at the
  // code exchange and at refresh. A client that expects RS256 from an ES256 client's token is
  // refused by the library: the check is real.
  async idTokenRS256(page) {
    const config = await discover('rp-rs256', { id_token_signed_response_alg: 'RS256' })
    const { tokens } = await authorize(config, page)
    assert.equal(header(tokens.id_token).alg, 'RS256')
    const next = await client.refreshTokenGrant(config, tokens.refresh_token)
    if (next.id_token) assert.equal(header(next.id_token).alg, 'RS256')

    const wrong = await discover('rp-public', { id_token_signed_response_alg: 'RS256' })
    await rejectsWith(authorize(wrong, page), /unexpected JWT "alg" header parameter/)
  },

  // max_age=0 over a live single sign-on session shows the login page again; without it the
  // session is reused (so the login page is max_age's doing).
  async maxAge(page) {
    const config = await discover('rp-public')
    const first = await authorize(config, page)
    assert.ok(first.seen.includes('login'))
    const again = await authorize(config, page)
    assert.ok(!again.seen.includes('login'), `single sign-on not reused: ${again.seen}`)
    const forced = await authorize(config, page, { params: { max_age: '0' }, checks: { maxAge: 0 } })
    assert.ok(forced.seen.includes('login'), `max_age=0 reused the session: ${forced.seen}`)
    // Without a session, prompt=none is login_required (OIDC Core §3.1.2.6), through the library.
    await page.context().clearCookies()
    await rejectsWith(authorize(config, page, { params: { prompt: 'none' } }), 'login_required')
  },

  // ui_locales=sq gives the Albanian login page to a browser that asks for English.
  async uiLocales(page) {
    const config = await discover('rp-public')
    const params = { redirect_uri: CALLBACK, scope: 'openid', code_challenge: await client.calculatePKCECodeChallenge(client.randomPKCECodeVerifier()), code_challenge_method: 'S256' }
    await page.goto(client.buildAuthorizationUrl(config, params).toString())
    assert.equal(await page.getAttribute('html', 'lang'), 'en')
    await page.goto(client.buildAuthorizationUrl(config, { ...params, ui_locales: 'sq', login_hint: USER }).toString())
    assert.equal(await page.getAttribute('html', 'lang'), 'sq')
    assert.equal((await page.locator('h1').innerText()).trim(), 'Hyr')
    assert.equal(await page.inputValue('#identifier'), USER) // login_hint fills in the identifier
  },

  // response_mode=query, the one mode discovery lists (response_modes_supported), named
  // explicitly: the response comes in the query as without it (OAuth 2.0 Multiple Response Type
  // Encoding Practices §2.1; OpenID Connect Discovery §3).
  async responseModeQuery(page) {
    const config = await discover('rp-public')
    const { cb, tokens } = await authorize(config, page, { params: { response_mode: 'query' } })
    assert.ok(cb.searchParams.get('code'))
    assert.ok(tokens.claims().sub)
  },

  // Optional parameters of OpenID Connect Core §3.1.2.1 an RP may send: display=page,
  // prompt=login (a new login over a live session), acr_values (the acr claim answers it),
  // claims_locales; the flow completes.
  async optionalParameters(page) {
    const config = await discover('rp-public')
    const low = 'http://eidas.europa.eu/LoA/low'
    await authorize(config, page)
    const { tokens, seen } = await authorize(config, page, { params: { display: 'page', prompt: 'login', acr_values: low, claims_locales: 'sq' } })
    assert.ok(seen.includes('login'), `prompt=login reused the session: ${seen}`)
    assert.equal(tokens.claims().acr, low)
  },

  // prompt=consent asks again for a consent the person gave and Vula remembers (OIDC Core
  // §3.1.2.1: the server SHOULD prompt for consent), without asking for a new login.
  async promptConsent(page) {
    const config = await discover('rp-public')
    await authorize(config, page)
    const again = await authorize(config, page, { params: { prompt: 'consent' } })
    assert.deepEqual(again.seen, ['consent'], 'prompt=consent with a remembered consent: pages seen')
  },

  // No state (PKCE protects the flow): served, and none comes back (the library's default
  // without expectedState is to require that none does).
  async withoutState(page) {
    const config = await discover('rp-public')
    const { cb, tokens } = await authorize(config, page, { params: { state: undefined } })
    assert.equal(cb.searchParams.get('state'), null)
    assert.equal(cb.searchParams.get('iss'), ISSUER)
    assert.ok(tokens.claims().sub)
    // A public client revokes its own refresh token (discovery lists none for revocation), and
    // the access token of the grant goes with it (RFC 7009 §2.1).
    await client.tokenRevocation(config, tokens.refresh_token)
    await rejectsWith(client.refreshTokenGrant(config, tokens.refresh_token), 'invalid_grant')
    await rejectsWith(client.fetchUserInfo(config, tokens.access_token, tokens.claims().sub), 'invalid_token')
  },

  // Access tokens name their resource in aud (RFC 9068 §2.2), resource (RFC 8707) picks it, and
  // one the granted scopes do not reach is invalid_target, which the library reports.
  async resourceIndicators(page) {
    const config = await discover('rp-public')
    const userinfo = ISSUER + '/userinfo'
    const { tokens } = await authorize(config, page, { params: { resource: userinfo } })
    assert.deepEqual([payload(tokens.access_token).aud].flat(), [userinfo])
    await client.fetchUserInfo(config, tokens.access_token, tokens.claims().sub)
    await rejectsWith(authorize(config, page, { params: { resource: ISSUER + '/api/v1/seal' } }), 'invalid_target')
  },

  // Introspection answers only authenticated confidential clients (RFC 7662 §2.1), and tells a
  // client nothing about another client's tokens unless it is a registered resource server.
  async introspectionIsAuthorized(page) {
    const pub = await discover('rp-public')
    const { tokens } = await authorize(pub, page)
    const rp = await discover('rp-basic', env('RP_BASIC_SECRET'), client.ClientSecretBasic())
    assert.equal((await client.tokenIntrospection(rp, tokens.access_token)).active, false)
    assert.equal((await client.tokenIntrospection(rp, tokens.refresh_token)).active, false)
    const rs = await discover('rp-resource', env('RP_RESOURCE_SECRET'), client.ClientSecretBasic())
    const intro = await client.tokenIntrospection(rs, tokens.access_token)
    assert.equal(intro.active, true)
    assert.equal(intro.client_id, 'rp-public')
    assert.equal(intro.sub, tokens.claims().sub)
    await assert.rejects(client.tokenIntrospection(pub, tokens.access_token), (e) => e.status === 401 || assert.fail(describe(e)))
  },

  // RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0) with the library's end-session
  // URL: confirmed in the browser, back at the registered URI with the state, and the next
  // authorization asks for the password again.
  async logout(page) {
    const config = await discover('rp-public')
    const { tokens } = await authorize(config, page)
    const bye = CALLBACK.replace(/\/cb$/, '/bye')
    const state = client.randomState()
    await page.goto(client.buildEndSessionUrl(config, { id_token_hint: tokens.id_token, post_logout_redirect_uri: bye, state }).toString())
    const here = page.url()
    await Promise.all([page.waitForURL((u) => u.toString() !== here), page.click('form[action="/logout"] button[type=submit]')])
    const back = new URL(page.url())
    assert.equal(back.origin + back.pathname, bye)
    assert.equal(back.searchParams.get('state'), state)
    const again = await authorize(config, page)
    assert.ok(again.seen.includes('login'), `still signed in after logout: ${again.seen}`)

    // Without id_token_hint, client_id (the library adds it) names whose registered URI counts
    // (RP-Initiated Logout §2).
    await page.goto(client.buildEndSessionUrl(config, { post_logout_redirect_uri: bye, state }).toString())
    const there = page.url()
    await Promise.all([page.waitForURL((u) => u.toString() !== there), page.click('form[action="/logout"] button[type=submit]')])
    assert.equal(new URL(page.url()).searchParams.get('state'), state)
    assert.ok(page.url().startsWith(bye))
  },

  // A FAPI 2.0 client (registered with --profile fapi2: private_key_jwt, PAR, DPoP required):
  // PAR and the token endpoint with DPoP proofs (the library answers the server's
  // use_dpop_nonce itself), DPoP-bound tokens (RFC 9449), userinfo with a proof, refresh; the
  // bound token is refused as a bearer token, and without proofs the code is not redeemed.
  async fapi2(page) {
    const key = await signingKey('rp-fapi')
    const config = await discover('rp-fapi', undefined, client.PrivateKeyJwt(key))
    const DPoP = client.getDPoPHandle(config, await client.randomDPoPKeyPair())
    const withPAR = (c, p) => client.buildAuthorizationUrlWithPAR(c, p, { DPoP })
    const { tokens } = await authorize(config, page, { build: withPAR, options: { DPoP } })
    assert.equal(tokens.token_type.toLowerCase(), 'dpop')
    assert.ok(payload(tokens.access_token).cnf?.jkt, 'no cnf.jkt in the access token')
    const sub = tokens.claims().sub
    await client.fetchUserInfo(config, tokens.access_token, sub, { DPoP })
    await assert.rejects(client.fetchUserInfo(config, tokens.access_token, sub), (e) => e.status === 401 || assert.fail(describe(e)))
    const next = await client.refreshTokenGrant(config, tokens.refresh_token, undefined, { DPoP })
    assert.equal(next.token_type.toLowerCase(), 'dpop')
    await client.fetchUserInfo(config, next.access_token, sub, { DPoP })

    // JAR through PAR, with DPoP (FAPI 2.0 Message Signing's signed requests).
    const jarPAR = async (c, p) => client.buildAuthorizationUrlWithPAR(c, (await client.buildAuthorizationUrlWithJAR(c, p, key)).searchParams, { DPoP })
    await authorize(config, page, { build: jarPAR, options: { DPoP } })

    // Without proofs this client gets no tokens.
    await rejectsWith(authorize(config, page, { build: client.buildAuthorizationUrlWithPAR }), 'invalid_dpop_proof')
  },

  // DPoP for a public client: the access token and the refresh token are bound to its key; a
  // refresh with another key is refused and does not spend the refresh token.
  async dpopPublicClient(page) {
    const config = await discover('rp-public')
    const DPoP = client.getDPoPHandle(config, await client.randomDPoPKeyPair())
    const { tokens } = await authorize(config, page, { options: { DPoP } })
    assert.equal(tokens.token_type.toLowerCase(), 'dpop')
    const other = client.getDPoPHandle(config, await client.randomDPoPKeyPair())
    await rejectsWith(client.refreshTokenGrant(config, tokens.refresh_token, undefined, { DPoP: other }), 'invalid_dpop_proof')
    await rejectsWith(client.refreshTokenGrant(config, tokens.refresh_token), 'invalid_dpop_proof')
    const next = await client.refreshTokenGrant(config, tokens.refresh_token, undefined, { DPoP })
    await client.fetchUserInfo(config, next.access_token, tokens.claims().sub, { DPoP })
  },

  // Pairwise subjects (discovery lists subject_types_supported pairwise): one person, two
  // clients, two subjects; userinfo answers with the client's own.
  async pairwiseSubject(page) {
    const pub = await discover('rp-public')
    const pw = await discover('rp-pairwise')
    const a = (await authorize(pub, page)).tokens
    const b = (await authorize(pw, page)).tokens
    assert.notEqual(a.claims().sub, b.claims().sub)
    await client.fetchUserInfo(pw, b.access_token, b.claims().sub)
  },

  // client_credentials (listed in grant_types_supported): a service's token works at the admin
  // API it is for (aud), and one narrowed to the sealing API by resource (RFC 8707) does not.
  async clientCredentials() {
    const config = await discover('rp-service', env('RP_SERVICE_SECRET'), client.ClientSecretBasic())
    const api = new URL(ISSUER + '/api/v1/admin/clients')
    const all = await client.clientCredentialsGrant(config, { scope: 'seal admin' })
    assert.deepEqual([payload(all.access_token).aud].flat().sort(), [ISSUER + '/api/v1/admin', ISSUER + '/api/v1/seal'])
    assert.equal((await client.fetchProtectedResource(config, all.access_token, api, 'GET')).status, 200)
    const seal = await client.clientCredentialsGrant(config, { scope: 'seal admin', resource: ISSUER + '/api/v1/seal' })
    await assert.rejects(client.fetchProtectedResource(config, seal.access_token, api, 'GET'), (e) => e.status === 401 || assert.fail(describe(e)))
  },

  // The claims request parameter (OIDC Core §5.5): person claims asked for by name, without
  // their scope, in the ID token and from userinfo.
  async claimsParameter(page) {
    const config = await discover('rp-public')
    const claims = JSON.stringify({ id_token: { given_name: null }, userinfo: { family_name: null } })
    const { tokens } = await authorize(config, page, { params: { scope: 'openid', claims } })
    const idt = tokens.claims()
    assert.equal(idt.given_name, 'Arta')
    const info = await client.fetchUserInfo(config, tokens.access_token, idt.sub)
    assert.equal(info.family_name, 'Krasniqi')
  },
}

// The redirect URI: a plain page on loopback, as a native or development RP has.
const cbURL = new URL(CALLBACK)
const callbackServer = http.createServer((req, res) => {
  res.writeHead(200, { 'content-type': 'text/plain' })
  res.end('callback received')
})
await new Promise((resolve) => callbackServer.listen(Number(cbURL.port), cbURL.hostname, resolve))

const browser = await chromium.launch({
  executablePath: env('RP_CHROMIUM'),
  // The flags this machine's Chromium needs (no background connections on a closed network).
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
})
const only = (process.env.RP_ONLY || '').split(',').filter(Boolean)
// One profile and one page for the suite (a new one costs seconds of a loaded machine), its
// cookies cleared before each case. The proxy's certificate is the test's own: the browser is
// not what is under test, the library is.
const context = await browser.newContext({ ignoreHTTPSErrors: true, locale: 'en-US' })
context.setDefaultTimeout(15000)
const page = await context.newPage()
let failed = 0
try {
  for (const [name, run] of Object.entries(cases)) {
    if (only.length && !only.includes(name)) continue
    await context.clearCookies()
    const start = Date.now()
    const result = { case: name }
    try {
      await run(page)
      result.ok = true
    } catch (e) {
      failed++
      result.ok = false
      result.error = describe(e)
      console.error(name, e)
    }
    result.ms = Date.now() - start
    console.log(JSON.stringify(result))
  }
} finally {
  await browser.close()
  callbackServer.close()
}
process.exit(failed ? 1 : 0)
