package core

import "time"

// fresh applies the revocation freshness constraint (Options.RevocationFreshness) to use, the
// revocation data a certificate of rep's chain was found with: a revoked status is final
// whatever its age; a good one must have been issued after, or at most the constraint before,
// the best-signature-time.
func (v *Validator) fresh(rep *SignatureReport, poe time.Time, use RevocationUse) bool {
	max := v.opts.RevocationFreshness
	if max <= 0 || use.Status == "revoked" {
		return true
	}
	return !use.ThisUpdate.Before(v.bestSignatureTime(rep, poe).Add(-max))
}

// bestSignatureTime is when what rep reports on was made, as far as freshness goes: a
// timestamp's own time, a signature's proof of existence (the validation time when nothing
// proves an earlier one).
func (v *Validator) bestSignatureTime(rep *SignatureReport, poe time.Time) time.Time {
	if rep.TimestampTime != nil {
		return *rep.TimestampTime
	}
	return poe
}
