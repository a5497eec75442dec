package audit

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/internal/store"
)

// Report sums up a verified chain.
type Report struct {
	Records           int64  `json:"records"`
	Checkpoints       int64  `json:"checkpoints"`
	LastCheckpointSeq int64  `json:"last_checkpoint_seq"`
	Unprotected       int64  `json:"unprotected"` // records after the last checkpoint record
	Head              string `json:"head"`        // hex hash of the last record
	TreeSize          int64  `json:"tree_size"`   // records covered by the signed tree checkpoint checked (0: none given)
	Root              string `json:"root"`        // base64 Merkle tree root over the records
}

// Problem names the first bad record.
type Problem struct {
	Seq    int64
	Reason string
}

func (p *Problem) Error() string { return fmt.Sprintf("audit record %d: %s", p.Seq, p.Reason) }

// PublicKeys finds the public key of an audit key by URI. It MUST NOT return the key of any
// other purpose: an official's or an institution's key signs whatever hash it is handed, so a
// checkpoint it signed proves nothing. KeysOf is one over the key layer.
type PublicKeys func(uri string) (crypto.PublicKey, error)

// KeysOf looks audit keys up in m, refusing keys of other purposes.
func KeysOf(ctx context.Context, m hsm.Manager) PublicKeys {
	return func(uri string) (crypto.PublicKey, error) {
		k, err := m.Key(ctx, uri)
		if err != nil {
			return nil, err
		}
		if k.Purpose != hsm.PurposeAudit {
			return nil, fmt.Errorf("%w: key is for %q, not %q", hsm.ErrWrongPurpose, k.Purpose, hsm.PurposeAudit)
		}
		return m.PublicKey(ctx, uri)
	}
}

// VerifyOptions carry what the operator knows from outside the log: a head seen before (an
// earlier report or export, a checkpoint a replica published). This is what catches a truncated
// tail, which the data alone cannot show.
type VerifyOptions struct {
	// ExpectSeq, when positive, is a length the chain must at least have.
	ExpectSeq int64
	// ExpectHead, when set, is the hash record ExpectSeq must have. It needs ExpectSeq.
	ExpectHead []byte
	// Checkpoint is a signed tree checkpoint to check the records against, for VerifyExport
	// (Verify reads the log's latest from the store): it must cover exactly the records.
	Checkpoint []byte
}

func (o VerifyOptions) validate() error {
	if o.ExpectSeq < 0 || o.ExpectHead != nil && (o.ExpectSeq == 0 || len(o.ExpectHead) != sha256.Size) {
		return fmt.Errorf("audit: expected head: want a positive seq, and a hash of %d bytes or none", sha256.Size)
	}
	return nil
}

type verifier struct {
	keys PublicKeys
	opts VerifyOptions
	rep  Report
	prev []byte
	seen bool // ExpectSeq was reached

	tree    frontier            // over the records checked and flushed
	root    tlog.Hash           // of tree
	pending []store.AuditRecord // checked, not yet in tree
}

func newVerifier(keys PublicKeys, opts VerifyOptions) *verifier {
	return &verifier{keys: keys, opts: opts, prev: make([]byte, 32), tree: frontier{hashes: map[int64]tlog.Hash{}}}
}

// flush adds the pending records to the tree, and checks the tree hashes they were stored with
// (those serve the proofs), when they were.
func (v *verifier) flush() error {
	if len(v.pending) == 0 {
		return nil
	}
	stored := make([][]byte, len(v.pending))
	for i := range v.pending {
		stored[i] = v.pending[i].Tree
	}
	var err error
	if v.tree, v.root, err = extend(v.tree, v.pending); err != nil {
		return err
	}
	for i, r := range v.pending {
		if stored[i] != nil && !bytes.Equal(stored[i], r.Tree) {
			return &Problem{Seq: r.Seq, Reason: "stored tree hashes differ from the record's: proofs served from them are wrong"}
		}
	}
	v.pending = v.pending[:0]
	return nil
}

func (v *verifier) check(r store.AuditRecord) error {
	want := v.rep.Records + 1
	switch {
	case r.Seq > want:
		return &Problem{Seq: want, Reason: fmt.Sprintf("missing records %d..%d", want, r.Seq-1)}
	case r.Seq < want:
		return &Problem{Seq: r.Seq, Reason: "out of order or repeated"}
	case !bytes.Equal(r.PrevHash, v.prev):
		return &Problem{Seq: r.Seq, Reason: "broken link: prev_hash is not the hash of the record before"}
	case !bytes.Equal(Hash(r), r.Hash):
		return &Problem{Seq: r.Seq, Reason: "hash mismatch: the record was changed"}
	}
	if r.Action == ActionCheckpoint {
		if err := v.checkpoint(r); err != nil {
			return &Problem{Seq: r.Seq, Reason: err.Error()}
		}
		v.rep.Checkpoints++
		v.rep.LastCheckpointSeq = r.Seq
	}
	if v.opts.ExpectSeq == r.Seq {
		if v.opts.ExpectHead != nil && !bytes.Equal(v.opts.ExpectHead, r.Hash) {
			return &Problem{Seq: r.Seq, Reason: "differs from the head expected by the operator"}
		}
		v.seen = true
	}
	v.rep.Records, v.prev = r.Seq, r.Hash
	v.pending = append(v.pending, r)
	if len(v.pending) >= 1000 {
		return v.flush()
	}
	return nil
}

func (v *verifier) checkpoint(r store.AuditRecord) error {
	var st Statement
	if err := json.Unmarshal(r.Detail, &st); err != nil {
		return fmt.Errorf("checkpoint statement unreadable: %v", err)
	}
	if st.Seq != r.Seq || st.Head != hex.EncodeToString(r.PrevHash) || st.Key != r.Key || !st.Time.Equal(r.Time) {
		return fmt.Errorf("checkpoint statement does not cover this position")
	}
	d := sha256.Sum256(r.Detail)
	pub, err := v.keys(st.Key)
	if err != nil {
		return fmt.Errorf("checkpoint key %s: %v", st.Key, err)
	}
	ok := false
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		ok = ecdsa.VerifyASN1(k, d[:], r.Signature)
	case *rsa.PublicKey:
		ok = rsa.VerifyPKCS1v15(k, crypto.SHA256, d[:], r.Signature) == nil
	default:
		return fmt.Errorf("checkpoint key of type %T", pub)
	}
	if !ok {
		return fmt.Errorf("bad checkpoint signature")
	}
	return nil
}

// finish ends the walk; signed, when not nil, is a signed tree checkpoint that must cover
// exactly the records walked.
func (v *verifier) finish(signed []byte) (Report, error) {
	if v.opts.ExpectSeq > 0 && !v.seen {
		return v.rep, &Problem{Seq: v.rep.Records + 1, Reason: fmt.Sprintf("truncated: the chain ends at %d, before the expected record %d", v.rep.Records, v.opts.ExpectSeq)}
	}
	if err := v.flush(); err != nil {
		return v.rep, err
	}
	v.rep.Unprotected = v.rep.Records - v.rep.LastCheckpointSeq
	v.rep.Head = hex.EncodeToString(v.prev)
	v.rep.Root = base64.StdEncoding.EncodeToString(v.root[:])
	if signed == nil {
		return v.rep, nil
	}
	cp, err := OpenCheckpoint(signed, keyVerifiers{v.keys})
	if err != nil {
		return v.rep, &Problem{Seq: v.rep.Records, Reason: fmt.Sprintf("the signed tree checkpoint does not verify: %v", err)}
	}
	switch {
	case cp.Size > v.rep.Records:
		return v.rep, &Problem{Seq: v.rep.Records + 1, Reason: fmt.Sprintf("truncated: the signed tree checkpoint covers %d records, the log ends at %d", cp.Size, v.rep.Records)}
	case cp.Size < v.rep.Records:
		return v.rep, &Problem{Seq: cp.Size + 1, Reason: fmt.Sprintf("records after the latest signed tree checkpoint (%d): never acknowledged, or added by someone without the audit key", cp.Size)}
	case cp.Root != v.root:
		return v.rep, &Problem{Seq: cp.Size, Reason: fmt.Sprintf("the records differ from the %d the signed tree checkpoint covers: a record was rewritten", cp.Size)}
	}
	v.rep.TreeSize = cp.Size
	return v.rep, nil
}

// Verify walks the whole chain in st and returns the first bad record as a *Problem.
func Verify(ctx context.Context, st store.AuditLog, keys PublicKeys, opts VerifyOptions) (Report, error) {
	if err := opts.validate(); err != nil {
		return Report{}, err
	}
	v := newVerifier(keys, opts)
	// The checkpoint is read after the records: every commit writes its records and the
	// checkpoint over them together, so it covers at least every record read. Records appended
	// meanwhile are read up to its size; fewer means the tail was cut.
	walk := func(to int64) error {
		for from := v.rep.Records + 1; from <= to; {
			page, err := st.AuditRecords(ctx, from, int(min(1000, to-from+1)))
			if err != nil {
				return err
			}
			for _, r := range page {
				if err := v.check(r); err != nil {
					return err
				}
			}
			if len(page) == 0 {
				return nil
			}
			from = page[len(page)-1].Seq + 1
		}
		return nil
	}
	if err := walk(math.MaxInt64); err != nil {
		return v.rep, err
	}
	size, signed, err := st.AuditCheckpoint(ctx)
	switch {
	case errors.Is(err, store.ErrNotFound):
		if v.rep.Records > 0 {
			return v.rep, &Problem{Seq: 1, Reason: "no signed tree checkpoint covers the log"}
		}
		return v.finish(nil)
	case err != nil:
		return v.rep, err
	}
	if err := walk(size); err != nil {
		return v.rep, err
	}
	return v.finish(signed)
}

// exported is one line of an export; bytes are hex.
type exported struct {
	Seq       int64     `json:"seq"`
	Time      time.Time `json:"time"`
	Actor     string    `json:"actor"`
	Action    string    `json:"action"`
	Key       string    `json:"key,omitempty"`
	Digest    hexBytes  `json:"digest,omitempty"`
	Result    string    `json:"result"`
	RequestID string    `json:"request_id,omitempty"`
	Detail    hexBytes  `json:"detail,omitempty"`
	Signature hexBytes  `json:"signature,omitempty"`
	PrevHash  hexBytes  `json:"prev_hash"`
	Hash      hexBytes  `json:"hash"`
}

type hexBytes []byte

func (h hexBytes) MarshalText() ([]byte, error) { return []byte(hex.EncodeToString(h)), nil }
func (h *hexBytes) UnmarshalText(b []byte) error {
	d, err := hex.DecodeString(string(b))
	*h = d
	return err
}

// Export writes the chain as JSON lines, one record a line, byte fields in hex.
func Export(ctx context.Context, st store.AuditLog, w io.Writer) error {
	enc := json.NewEncoder(w)
	for from := int64(1); ; {
		page, err := st.AuditRecords(ctx, from, 1000)
		if err != nil {
			return err
		}
		for _, r := range page {
			if err := enc.Encode(exported{r.Seq, r.Time, r.Actor, r.Action, r.Key, r.Digest, r.Result, r.RequestID,
				r.Detail, r.Signature, r.PrevHash, r.Hash}); err != nil {
				return err
			}
		}
		if len(page) < 1000 {
			return nil
		}
		from = page[len(page)-1].Seq + 1
	}
}

// VerifyExport checks an export offline, with the same checks as Verify.
func VerifyExport(r io.Reader, keys PublicKeys, opts VerifyOptions) (Report, error) {
	if err := opts.validate(); err != nil {
		return Report{}, err
	}
	v := newVerifier(keys, opts)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	line := 0
	for sc.Scan() {
		line++
		var e exported
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return v.rep, &Problem{Seq: v.rep.Records + 1, Reason: fmt.Sprintf("line %d unreadable: %v", line, err)}
		}
		rec := store.AuditRecord{Seq: e.Seq, Time: e.Time, Actor: e.Actor, Action: e.Action, Key: e.Key, Digest: e.Digest,
			Result: e.Result, RequestID: e.RequestID, Detail: e.Detail, Signature: e.Signature, PrevHash: e.PrevHash, Hash: e.Hash}
		if err := v.check(rec); err != nil {
			return v.rep, err
		}
	}
	if err := sc.Err(); err != nil {
		return v.rep, err
	}
	return v.finish(opts.Checkpoint)
}
