// What the suites of this folder (wallet.mjs, present.mjs, verifier.mjs) share: the case
// runner that prints one JSON line a case for the Go test to read, small helpers, and
// @animo-id/mdoc's context, which verifies mdocs with node's crypto (digests, COSE_Sign1, X.509)
// rather than anything of Vula's.
import crypto from 'node:crypto';

// run runs case name and prints its outcome as one JSON line.
export async function run(name, f) {
  const t0 = Date.now();
  try {
    await f();
    console.log(JSON.stringify({ case: name, ok: true, ms: Date.now() - t0 }));
  } catch (e) {
    console.log(JSON.stringify({ case: name, ok: false, error: String(e && e.stack || e) + (e && e.errorResponse ? ' ' + JSON.stringify(e.errorResponse) : ''), ms: Date.now() - t0 }));
  }
}

export function assert(cond, msg) { if (!cond) throw new Error(msg); }
export const b64u = (b) => Buffer.from(b).toString('base64url');
export const decodePart = (s) => JSON.parse(Buffer.from(s, 'base64url').toString());

// The mdoc library's context for verifying: issuer-signed data and device signatures, no MAC.
const x509 = (der) => new crypto.X509Certificate(Buffer.from(der));
export const mdocContext = {
  crypto: {
    random: (n) => new Uint8Array(crypto.randomBytes(n)),
    digest: ({ digestAlgorithm, bytes }) => {
      assert(digestAlgorithm === 'SHA-256', `digest ${digestAlgorithm}`);
      return new Uint8Array(crypto.createHash('sha256').update(bytes).digest());
    },
    calculateEphemeralMacKeyJwk: () => { throw new Error('not used: signatures only, no MAC'); },
  },
  cose: {
    sign1: {
      sign: () => { throw new Error('not used'); },
      verify: ({ sign1, jwk }) => {
        const { data, signature } = sign1.getRawVerificationData();
        return crypto.verify('sha256', Buffer.from(data), { key: crypto.createPublicKey({ key: jwk, format: 'jwk' }), dsaEncoding: 'ieee-p1363' },
          Buffer.from(signature));
      },
    },
    mac0: { sign: () => { throw new Error('not used'); }, verify: () => { throw new Error('not used'); } },
  },
  x509: {
    getIssuerNameField: ({ certificate, field }) => x509(certificate).issuer.split('\n')
      .filter((l) => l.startsWith(field + '=')).map((l) => l.slice(field.length + 1)),
    getPublicKey: ({ certificate }) => x509(certificate).publicKey.export({ format: 'jwk' }),
    validateCertificateChain: ({ trustedCertificates, x5chain }) => {
      const chain = x5chain.map(x509);
      const anchor = x509(trustedCertificates[0]);
      for (let i = 0; i < chain.length; i++) {
        const issuer = i + 1 < chain.length ? chain[i + 1] : anchor;
        if (!(chain[i].checkIssued(issuer) && chain[i].verify(issuer.publicKey))) throw new Error(`x5chain[${i}] is not issued by ${issuer.subject}`);
      }
    },
    getCertificateData: ({ certificate }) => {
      const c = x509(certificate);
      return { issuerName: c.issuer, subjectName: c.subject, serialNumber: c.serialNumber, thumbprint: c.fingerprint256,
        notBefore: new Date(c.validFrom), notAfter: new Date(c.validTo), pem: c.toString() };
    },
  },
};
