// Package pades validates the signatures and document timestamps of a PDF (PAdES baseline, or
// a legacy adbe.pkcs7.detached signature reported as PKCS#7), reading the file where it lies.
//
// The contract: each signature is validated over the revision its /ByteRange ends with, and the
// revisions after it may add only what PAdES and the document's DocMDP/FieldMDP locks permit
// (diff.go compares the signed revision with the whole file object by object); anything else
// fails the signature with FORMAT_FAILURE. The DSS is the evidence beside every signature. A
// passed document timestamp is a proof of existence of everything its range covers, so the
// document timestamps are validated from the last to the first (see internal/validation).
// digitorus/pdf reads the file behind pdfsafe's guard; a panic in it is bad input.
package pades
