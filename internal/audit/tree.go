package audit

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/vula-eid/vula/internal/problem"
	"github.com/vula-eid/vula/internal/store"
)

// ErrBadRequest marks a proof request the log cannot answer as asked (a size beyond the log, a
// record outside the tree): the caller's mistake, not the log's.
var ErrBadRequest = problem.New(problem.InvalidRequest, "audit: bad request")

// sigTypeECDSA is signed-note's signature type for ECDSA (c2sp.org/signed-note: "as implemented
// by github.com/transparency-dev/witness"): the key ID is the first four bytes of SHA-256 over
// the DER SubjectPublicKeyInfo, the signature ASN.1 DER over SHA-256 of the note text.
const sigTypeECDSA = 0x02

// LeafHash is the Merkle tree leaf of a record: the RFC 6962 leaf hash of its chain hash.
func LeafHash(r store.AuditRecord) tlog.Hash { return tlog.RecordHash(r.Hash) }

// Checkpoint is a parsed c2sp.org/tlog-checkpoint body: the log's origin, the number of
// records, the Merkle tree root over them.
type Checkpoint struct {
	Origin string
	Size   int64
	Root   tlog.Hash
}

func (c Checkpoint) text() string {
	return fmt.Sprintf("%s\n%d\n%s\n", c.Origin, c.Size, base64.StdEncoding.EncodeToString(c.Root[:]))
}

// ParseCheckpoint reads a checkpoint's note text (extension lines are allowed and ignored).
func ParseCheckpoint(text string) (Checkpoint, error) {
	lines := strings.SplitN(text, "\n", 4)
	if len(lines) < 4 || lines[0] == "" {
		return Checkpoint{}, errors.New("audit: checkpoint: want origin, size and root lines")
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 || strconv.FormatInt(size, 10) != lines[1] {
		return Checkpoint{}, errors.New("audit: checkpoint: bad tree size")
	}
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(root) != tlog.HashSize {
		return Checkpoint{}, errors.New("audit: checkpoint: bad root hash")
	}
	c := Checkpoint{Origin: lines[0], Size: size}
	copy(c.Root[:], root)
	return c, nil
}

// ecdsaKeyID is the signed-note key ID of an ECDSA key.
func ecdsaKeyID(pub *ecdsa.PublicKey) (uint32, []byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return 0, nil, err
	}
	h := sha256.Sum256(der)
	return binary.BigEndian.Uint32(h[:4]), der, nil
}

// noteSigner signs checkpoints with the audit key. The note's key name is the key's URI, so a
// verifier finds the key in the key layer by name, as it does for the chain's checkpoints.
type noteSigner struct {
	name string
	id   uint32
	s    crypto.Signer
}

var _ note.Signer = noteSigner{}

func newNoteSigner(uri string, s crypto.Signer) (noteSigner, error) {
	pub, ok := s.Public().(*ecdsa.PublicKey)
	if !ok {
		return noteSigner{}, fmt.Errorf("audit: the audit key must be ECDSA to sign checkpoints as notes, it is %T", s.Public())
	}
	id, _, err := ecdsaKeyID(pub)
	if err != nil {
		return noteSigner{}, err
	}
	return noteSigner{name: uri, id: id, s: s}, nil
}

func (n noteSigner) Name() string    { return n.name }
func (n noteSigner) KeyHash() uint32 { return n.id }
func (n noteSigner) Sign(msg []byte) ([]byte, error) {
	d := sha256.Sum256(msg)
	return n.s.Sign(rand.Reader, d[:], crypto.SHA256)
}

// ecdsaVerifier checks a checkpoint's signature.
type ecdsaVerifier struct {
	name string
	id   uint32
	pub  *ecdsa.PublicKey
}

var _ note.Verifier = ecdsaVerifier{}

func (v ecdsaVerifier) Name() string    { return v.name }
func (v ecdsaVerifier) KeyHash() uint32 { return v.id }
func (v ecdsaVerifier) Verify(msg, sig []byte) bool {
	d := sha256.Sum256(msg)
	return ecdsa.VerifyASN1(v.pub, d[:], sig)
}

// NewVerifier makes the note verifier of an audit public key named name (its URI).
func NewVerifier(name string, pub crypto.PublicKey) (note.Verifier, error) {
	k, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("audit: checkpoint key of type %T, want ECDSA", pub)
	}
	id, _, err := ecdsaKeyID(k)
	if err != nil {
		return nil, err
	}
	return ecdsaVerifier{name: name, id: id, pub: k}, nil
}

// VerifierKey encodes an audit public key as a signed-note verifier key,
// name+hex(key ID)+base64(0x02 || DER SubjectPublicKeyInfo), for witnesses.
func VerifierKey(name string, pub crypto.PublicKey) (string, error) {
	k, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return "", fmt.Errorf("audit: checkpoint key of type %T, want ECDSA", pub)
	}
	id, der, err := ecdsaKeyID(k)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s+%08x+%s", name, id, base64.StdEncoding.EncodeToString(append([]byte{sigTypeECDSA}, der...))), nil
}

// ParseVerifierKey reads a verifier key as VerifierKey writes it (or an Ed25519 one).
func ParseVerifierKey(vkey string) (note.Verifier, error) {
	parts := strings.SplitN(vkey, "+", 3) // base64 has + in it
	if len(parts) != 3 {
		return nil, errors.New("audit: verifier key: want name+keyid+key")
	}
	raw, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil || len(raw) < 2 {
		return nil, errors.New("audit: verifier key: bad key encoding")
	}
	if raw[0] != sigTypeECDSA {
		return note.NewVerifier(vkey)
	}
	pub, err := x509.ParsePKIXPublicKey(raw[1:])
	if err != nil {
		return nil, fmt.Errorf("audit: verifier key: %v", err)
	}
	v, err := NewVerifier(parts[0], pub)
	if err != nil {
		return nil, err
	}
	if fmt.Sprintf("%08x", v.KeyHash()) != parts[1] {
		return nil, errors.New("audit: verifier key: key ID does not match the key")
	}
	return v, nil
}

// keyVerifiers finds a checkpoint's verifier by key name (an audit key's URI) in the key layer.
type keyVerifiers struct{ keys PublicKeys }

func (k keyVerifiers) Verifier(name string, id uint32) (note.Verifier, error) {
	pub, err := k.keys(name)
	if err != nil {
		return nil, &note.UnknownVerifierError{Name: name, KeyHash: id}
	}
	v, err := NewVerifier(name, pub)
	if err != nil || v.KeyHash() != id {
		return nil, &note.UnknownVerifierError{Name: name, KeyHash: id}
	}
	return v, nil
}

// OpenCheckpoint checks a signed checkpoint against known and parses it.
func OpenCheckpoint(signed []byte, known note.Verifiers) (Checkpoint, error) {
	n, err := note.Open(signed, known)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("audit: checkpoint signature: %w", err)
	}
	return ParseCheckpoint(n.Text)
}

// frontier holds the stored hashes (tlog's numbering) of the complete subtrees at the right
// edge of the tree of size records, whose last record's hash is head: all that appending to
// the tree, or computing its root, reads.
type frontier struct {
	size   int64
	head   []byte
	hashes map[int64]tlog.Hash
}

// frontierIndexes lists the stored-hash indexes of the frontier of a tree of size n, with the
// seq of the record that stored each and its place in that record's Tree.
func frontierIndexes(n int64) (idx []int64, seq []int64, level []int) {
	for l := 0; l < 63; l++ {
		if n>>l&1 == 0 {
			continue
		}
		k := n>>l - 1 // the subtree at level l ending at the edge
		idx = append(idx, tlog.StoredHashIndex(l, k))
		seq = append(seq, (k+1)<<l) // completed by the record at leaf (k+1)*2^l - 1
		level = append(level, l)
	}
	return idx, seq, level
}

// hashMap is a tlog.HashReader over hashes in memory.
type hashMap map[int64]tlog.Hash

func (m hashMap) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		h, ok := m[x]
		if !ok {
			return nil, fmt.Errorf("audit: tree hash %d not at hand", x)
		}
		out[i] = h
	}
	return out, nil
}

// extend adds records to the tree of f (whose size is their first seq - 1): it sets each
// record's Tree and returns the new frontier's hashes and root. f is not changed.
func extend(f frontier, recs []store.AuditRecord) (frontier, tlog.Hash, error) {
	m := make(hashMap, len(f.hashes)+3*len(recs)) // a record stores 2 hashes on average
	for k, v := range f.hashes {
		m[k] = v
	}
	for i := range recs {
		n := recs[i].Seq - 1
		if n != f.size+int64(i) {
			return frontier{}, tlog.Hash{}, fmt.Errorf("audit: record %d does not follow the tree of %d", recs[i].Seq, f.size)
		}
		hs, err := tlog.StoredHashesForRecordHash(n, LeafHash(recs[i]), m)
		if err != nil {
			return frontier{}, tlog.Hash{}, err
		}
		base := tlog.StoredHashCount(n)
		tree := make([]byte, 0, len(hs)*tlog.HashSize)
		for j, h := range hs {
			m[base+int64(j)] = h
			tree = append(tree, h[:]...)
		}
		recs[i].Tree = tree
	}
	next := frontier{size: f.size + int64(len(recs)), head: f.head, hashes: make(map[int64]tlog.Hash, 64)}
	if len(recs) > 0 {
		next.head = recs[len(recs)-1].Hash
	}
	idx, _, _ := frontierIndexes(next.size)
	for _, x := range idx {
		next.hashes[x] = m[x]
	}
	if next.size == 0 {
		return next, tlog.Hash{}, nil
	}
	root, err := tlog.TreeHash(next.size, hashMap(next.hashes))
	return next, root, err
}

// treeAt returns the frontier after last: this process's own when it wrote last, else read
// from the records' stored hashes.
func (l *Log) treeAt(ctx context.Context, last *store.AuditRecord) (frontier, error) {
	if last == nil {
		return frontier{hashes: map[int64]tlog.Hash{}}, nil
	}
	l.treeMu.Lock()
	f := l.tree
	l.treeMu.Unlock()
	if f.size == last.Seq && bytes.Equal(f.head, last.Hash) {
		return f, nil
	}
	return readFrontier(ctx, l.st, last.Seq, last.Hash)
}

func readFrontier(ctx context.Context, st store.AuditLog, size int64, head []byte) (frontier, error) {
	idx, seqs, levels := frontierIndexes(size)
	trees, err := st.AuditTree(ctx, seqs)
	if err != nil {
		return frontier{}, err
	}
	f := frontier{size: size, head: head, hashes: map[int64]tlog.Hash{}}
	for i, x := range idx {
		t := trees[seqs[i]]
		off := levels[i] * tlog.HashSize
		if len(t) < off+tlog.HashSize {
			return frontier{}, fmt.Errorf("audit: record %d has no tree hashes", seqs[i])
		}
		f.hashes[x] = tlog.Hash(t[off : off+tlog.HashSize])
	}
	return f, nil
}

// seal gives recs, the records about to follow last in one commit, their tree hashes, and the
// last of them the signed checkpoint of the tree they end: no record is committed outside a
// signed checkpoint. It runs under the store's write lock.
func (l *Log) seal(ctx context.Context, last *store.AuditRecord, recs []store.AuditRecord) error {
	if len(recs) == 0 {
		return nil
	}
	f, err := l.treeAt(ctx, last)
	if err != nil {
		return err
	}
	next, root, err := extend(f, recs)
	if err != nil {
		return err
	}
	signed, err := note.Sign(&note.Note{Text: Checkpoint{Origin: l.opts.Origin, Size: next.size, Root: root}.text()}, l.note)
	if err != nil {
		return fmt.Errorf("audit: signing checkpoint: %w", err)
	}
	recs[len(recs)-1].Checkpoint = signed
	// Kept before the commit is known: a failed commit leaves a frontier whose head no record
	// has, which treeAt never takes.
	l.treeMu.Lock()
	if next.size > l.tree.size || !bytes.Equal(next.head, l.tree.head) {
		l.tree = next
	}
	l.treeMu.Unlock()
	return nil
}

// storeHashes reads stored tree hashes from the records that hold them.
type storeHashes struct {
	ctx context.Context
	st  store.AuditLog
}

func (s storeHashes) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	seqs := make([]int64, len(indexes))
	pos := make([]int, len(indexes))
	for i, x := range indexes {
		level, k := tlog.SplitStoredHashIndex(x)
		seqs[i], pos[i] = (k+1)<<level, level
	}
	trees, err := s.st.AuditTree(s.ctx, seqs)
	if err != nil {
		return nil, err
	}
	out := make([]tlog.Hash, len(indexes))
	for i := range indexes {
		t := trees[seqs[i]]
		off := pos[i] * tlog.HashSize
		if len(t) < off+tlog.HashSize {
			return nil, fmt.Errorf("audit: record %d has no tree hashes", seqs[i])
		}
		out[i] = tlog.Hash(t[off : off+tlog.HashSize])
	}
	return out, nil
}

// LatestCheckpoint returns the log's latest signed checkpoint and the tree size it covers.
func LatestCheckpoint(ctx context.Context, st store.AuditLog) (int64, []byte, error) {
	return st.AuditCheckpoint(ctx)
}

// checkSizes refuses a proof request beyond the latest checkpoint.
func checkSizes(ctx context.Context, st store.AuditLog, lo, hi int64, what string) error {
	size, _, err := st.AuditCheckpoint(ctx)
	if errors.Is(err, store.ErrNotFound) {
		size, err = 0, nil
	}
	if err != nil {
		return err
	}
	if lo < 1 || hi < lo || hi > size {
		return fmt.Errorf("%w: %s: want 1 <= %d <= %d <= %d (the latest checkpoint's size)", ErrBadRequest, what, lo, hi, size)
	}
	return nil
}

// InclusionProof proves that record seq is in the tree of the first size records.
func InclusionProof(ctx context.Context, st store.AuditLog, seq, size int64) (tlog.RecordProof, error) {
	if err := checkSizes(ctx, st, seq, size, "inclusion of record seq in the tree of size"); err != nil {
		return nil, err
	}
	return tlog.ProveRecord(size, seq-1, storeHashes{ctx, st})
}

// ConsistencyProof proves that the tree of the first from records is a prefix of the tree of
// the first to records.
func ConsistencyProof(ctx context.Context, st store.AuditLog, from, to int64) (tlog.TreeProof, error) {
	if err := checkSizes(ctx, st, from, to, "consistency of the tree of size from with that of size to"); err != nil {
		return nil, err
	}
	return tlog.ProveTree(to, from, storeHashes{ctx, st})
}

// fillTree gives the records of a log from before the tree their tree hashes, and the log its
// first signed checkpoint. Appends from other processes meanwhile fail until it is done (they
// find no tree hashes to extend) and are retried by their callers.
func (l *Log) fillTree(ctx context.Context) error {
	head, err := l.head(ctx)
	if err != nil || head == nil || head.Tree != nil {
		return err
	}
	l.log.Warn("audit log from before the Merkle tree: computing its tree hashes", "records", head.Seq)
	f := frontier{hashes: map[int64]tlog.Hash{}}
	for from := int64(1); from <= head.Seq; {
		page, err := l.st.AuditRecords(ctx, from, 1000)
		if err != nil {
			return err
		}
		if len(page) == 0 {
			break
		}
		if f, _, err = extend(f, page); err != nil {
			return err
		}
		trees := map[int64][]byte{}
		for _, r := range page {
			trees[r.Seq] = r.Tree
		}
		if err := l.st.FillAuditTree(ctx, trees); err != nil {
			return err
		}
		from = page[len(page)-1].Seq + 1
	}
	_, err = l.checkpointOver(ctx)
	return err
}

// checkpointOver appends a chain checkpoint over the head, whatever it is, signed under the
// log's lock; it carries the tree's signed checkpoint like any append.
func (l *Log) checkpointOver(ctx context.Context) (store.AuditRecord, error) {
	recs, err := l.st.AppendAudit(ctx, func(last *store.AuditRecord) ([]store.AuditRecord, error) {
		if last == nil {
			return nil, nil
		}
		r, err := l.signed(last)
		if err != nil {
			return nil, err
		}
		recs := []store.AuditRecord{r}
		return recs, l.seal(ctx, last, recs)
	})
	if err != nil || len(recs) == 0 {
		return store.AuditRecord{}, err
	}
	return recs[0], nil
}
