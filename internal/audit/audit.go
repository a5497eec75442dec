// Package audit is Vula's append-only, hash-chained audit log.
//
// Every record holds the SHA-256 of the record before it, so that changing, removing or
// reordering a record breaks the chain at that record. Every N records (and every T seconds when
// something was written) a checkpoint record is appended, signed by an audit-purpose key of the
// key layer; it states the sequence number and hash of the head it covers, so that rewriting the
// whole chain after a point needs the audit key. A truncated tail (records removed after the last
// checkpoint, or a checkpoint removed with them) cannot be told from the chain alone: hence the
// tree below.
//
// # Verifiable log
//
// The records are also the leaves of a Merkle tree with RFC 6962/9162 hashing
// (golang.org/x/mod/sumdb/tlog): leaf seq-1 is the record seq, its leaf hash SHA-256(0x00 ||
// the record's hash). Every commit of records carries, in the same transaction, a signed
// checkpoint of the tree they end (c2sp.org/tlog-checkpoint: origin, size, base64 root), a
// c2sp.org/signed-note signed by the audit key: signature type 0x02 (ECDSA over SHA-256 of the
// note text, ASN.1 DER; key ID the first four bytes of SHA-256 over the DER public key), key name
// the key's URI. So no acknowledged record is ever outside a signed checkpoint: Verify checks
// the records against the latest one, which finds a tail rewritten and re-hashed, or cut off.
// A cut back to an older checkpoint, put back too, is found by a witness that kept a later one
// (Witness, `vula audit witness`) or by VerifyOptions (a head seen before). Each record keeps
// the tree hashes it adds (tlog's stored hashes), from which InclusionProof and
// ConsistencyProof answer.
//
// All of an append (reading the last record, hashing, writing) happens inside the store's
// AppendAudit, under the log's write lock, so writers in any number of processes keep one chain.
// Checkpoints are counted from the chain, not per process.
//
// # Record hash
//
// A record's hash is SHA-256 over this byte string, which an auditor can rebuild without Vula:
//
//	"vula-audit-v1"        13 ASCII bytes, no length prefix
//	seq                    8 bytes, big-endian (two's complement)
//	time                   8 bytes, big-endian (two's complement), microseconds since 1970-01-01 UTC
//	then actor, action, key, digest, result, request_id, detail, signature, prev_hash, in this
//	order, each as a 4-byte big-endian length followed by its bytes (strings as UTF-8; an absent
//	byte field is length 0).
//
// prev_hash is the hash of record seq-1, and 32 zero bytes for record 1.
//
// # Checkpoints
//
// A checkpoint is a record with action "checkpoint", actor "vula", result "ok", key the URI of
// the audit key. Its detail is the JSON statement {"seq","head","time","key"}: seq and time are
// the checkpoint record's own, head is the lowercase hex of its prev_hash (the hash of the record
// it covers, seq-1), key its key. Its digest is SHA-256(detail) and its signature is the audit
// key's signature over that digest: ASN.1 DER for ECDSA, PKCS#1 v1.5 for RSA. A verifier checks
// that the statement names the record's own seq, prev_hash, time and key, and the signature with
// the public key of an audit-purpose key (never another purpose's: an official's key signs
// whatever hash the official submits).
//
// The audit key signs through the UN-instrumented key manager (New's keys): an instrumented
// signer would write an audit record for its own checkpoint signature, which would ask for a
// checkpoint, recursively. The checkpoint record itself is the record of that key's use.
//
// # Export
//
// Export writes one JSON object a line, in seq order, with the fields seq, time (RFC 3339, UTC,
// microseconds), actor, action, key, digest, result, request_id, detail, signature, prev_hash and
// hash; byte fields are lowercase hex; empty fields may be left out. VerifyExport checks such a
// file offline exactly as Verify checks the database.
package audit

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/internal/store"
)

// Event is what a caller records; the log adds time, sequence and hashes.
type Event struct {
	Actor     string
	Action    string
	Key       string
	Digest    []byte
	Result    string
	RequestID string
	Detail    []byte
	// Subject is the person the event is about, "" for none: the log is indexed by it
	// (store.AuditLog.AuditOf), outside the hash chain.
	Subject string
	// Transaction, if not nil, is stored in the same commit as the record, outside the hash
	// chain (store.AuditRecord.Transaction; see WithTransaction).
	Transaction *store.Transaction
}

// ActionCheckpoint is the action of checkpoint records.
const ActionCheckpoint = "checkpoint"

// Options tune checkpoints and group commits.
type Options struct {
	// Every appends a checkpoint after this many records since the last one (default 1000).
	Every int64
	// Interval appends a checkpoint this often when records were written since the last one
	// (default one minute); used by Run.
	Interval time.Duration
	// Origin names a new log in its signed tree checkpoints (c2sp.org/tlog-checkpoint's first
	// line), a schema-less URL such as "vula.example/audit" (default "vula/audit"). A log that
	// has a checkpoint keeps the origin it has.
	Origin string
	// Linger is how long the writer of a group commit may wait for more appends to join its
	// batch, as PostgreSQL's commit_delay: every commit costs a transaction, a durable flush
	// and a checkpoint signature whatever it carries, so under load fewer, larger commits cost
	// less CPU a record, for up to Linger more latency. The writer waits only while fewer
	// appends are queued than the previous commit carried, and only when that commit carried
	// two or more and ended less than 4×Linger ago: appends are arriving together. So an
	// append of a lone caller never waits. 0 (the default) never waits.
	Linger time.Duration
	// LingerBatch caps the batch a writer waits for (default 64).
	LingerBatch int
}

// Log appends to the chain kept by a store.AuditLog.
type Log struct {
	st     store.AuditLog
	now    func() time.Time
	log    *slog.Logger
	opts   Options
	keyURI string
	signer crypto.Signer // the audit key, NOT instrumented: its use is recorded by the checkpoint itself
	note   noteSigner    // the same key, signing tree checkpoints

	treeMu sync.Mutex
	tree   frontier // the tree after the last record this process appended (see seal)

	lastCheckpoint atomic.Int64 // seq of the newest checkpoint seen by this process
	checkpointing  sync.Mutex

	mu      sync.Mutex // guards the fields below it (group commit; see Append)
	queue   []*pending
	writing bool
	// Lingering (see Options.Linger): the previous commit's batch and end, and while the
	// writer waits, how many it waits for and the channel closed when they are queued.
	lastBatch int
	lastEnd   time.Time
	want      int
	full      chan struct{}

	commits, committed, commitNanos atomic.Int64 // group commits of events, the events they carried, their time
	lingers                         atomic.Int64 // commits whose writer waited for more appends (Options.Linger)

	ownMu          sync.Mutex
	ownFrom, ownTo int64 // the latest unbroken run of seqs this process appended (see wrote)
}

// Metrics exports Stats for /metrics: vula_audit_group_commits_total,
// vula_audit_group_committed_records_total and vula_audit_group_commit_seconds_total, whose
// quotients are the mean batch (records a commit) and the mean commit time, and
// vula_audit_group_commit_lingers_total.
func (l *Log) Metrics() []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "vula_audit_group_commits_total",
			Help: "Group commits of audit events (each one transaction)."},
			func() float64 { return float64(l.commits.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "vula_audit_group_committed_records_total",
			Help: "Audit events written by group commits."},
			func() float64 { return float64(l.committed.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "vula_audit_group_commit_seconds_total",
			Help: "Time spent in group commits of audit events."},
			func() float64 { return time.Duration(l.commitNanos.Load()).Seconds() }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "vula_audit_group_commit_lingers_total",
			Help: "Group commits whose writer waited for more appends to join (audit.group_commit_linger)."},
			func() float64 { return float64(l.lingers.Load()) }),
	}
}

// Stats counts the group commits of events since New.
type Stats struct {
	Commits int64         // transactions that wrote events (checkpoints not counted)
	Records int64         // events they carried: Records/Commits is the mean batch
	Time    time.Duration // spent in those transactions, from begin to durable commit
	Lingers int64         // commits whose writer first waited for more appends (Options.Linger)
}

// Stats says how well appends are being grouped.
func (l *Log) Stats() Stats {
	return Stats{Commits: l.commits.Load(), Records: l.committed.Load(), Time: time.Duration(l.commitNanos.Load()),
		Lingers: l.lingers.Load()}
}

var _ hsm.AuditHook = (*Log)(nil)

// New makes a log over st, checkpointed with the audit key at keyURI of keys. keys MUST be the
// un-instrumented manager (see the package comment); New refuses an instrumented one.
func New(ctx context.Context, st store.AuditLog, keys hsm.Manager, keyURI string, opts Options, now func() time.Time, log *slog.Logger) (*Log, error) {
	if opts.Every <= 0 {
		opts.Every = 1000
	}
	if opts.Interval <= 0 {
		opts.Interval = time.Minute
	}
	if opts.Origin == "" {
		opts.Origin = "vula/audit"
	}
	if opts.LingerBatch <= 0 {
		opts.LingerBatch = 64
	}
	if strings.ContainsAny(opts.Origin, "\n") {
		return nil, errors.New("audit: the origin must be one line")
	}
	s, err := keys.Signer(ctx, keyURI, hsm.PurposeAudit)
	if err != nil {
		return nil, fmt.Errorf("audit: checkpoint key: %w", err)
	}
	// Signers of an instrumented manager take a context (hsm.ContextSigner); one here would
	// append from inside an append and deadlock on the log's lock.
	if _, ok := s.(hsm.ContextSigner); ok {
		return nil, errors.New("audit: the checkpoint key must come from the un-instrumented key manager")
	}
	ns, err := newNoteSigner(keyURI, s)
	if err != nil {
		return nil, err
	}
	// A log keeps the name of its first checkpoint: processes configured with other base
	// URLs (a CLI command beside serve) must not rename it under its witnesses.
	if _, signed, err := st.AuditCheckpoint(ctx); err == nil {
		origin, _, _ := strings.Cut(string(signed), "\n")
		opts.Origin = origin
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("audit: latest checkpoint: %w", err)
	}
	l := &Log{st: st, now: now, log: log, opts: opts, keyURI: keyURI, signer: s, note: ns}
	if err := l.fillTree(ctx); err != nil {
		return nil, err
	}
	return l, nil
}

// Hash computes a record's hash from all its fields but Hash.
func Hash(r store.AuditRecord) []byte {
	h := sha256.New()
	h.Write([]byte("vula-audit-v1"))
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(r.Seq))
	h.Write(n[:])
	binary.BigEndian.PutUint64(n[:], uint64(r.Time.UnixMicro()))
	h.Write(n[:])
	for _, f := range [][]byte{[]byte(r.Actor), []byte(r.Action), []byte(r.Key), r.Digest, []byte(r.Result),
		[]byte(r.RequestID), r.Detail, r.Signature, r.PrevHash} {
		var l [4]byte
		binary.BigEndian.PutUint32(l[:], uint32(len(f)))
		h.Write(l[:])
		h.Write(f)
	}
	return h.Sum(nil)
}

func (l *Log) link(last *store.AuditRecord, r store.AuditRecord) store.AuditRecord {
	r.Seq, r.PrevHash = 1, make([]byte, 32)
	if last != nil {
		r.Seq, r.PrevHash = last.Seq+1, last.Hash
	}
	r.Time = l.now().UTC().Truncate(time.Microsecond)
	r.Hash = Hash(r)
	return r
}

// Append adds ev to the chain and returns the record once it is durable. A checkpoint follows
// when Every records have passed since the last one in the chain.
//
// Appends are group-committed: while one batch is being written, those that arrive queue up,
// and the first of them writes the whole queue in the next commit. So N concurrent appenders
// pay for about one commit, not N, and the chain stays one sequence.
func (l *Log) Append(ctx context.Context, ev Event) (store.AuditRecord, error) {
	if ev.Action == "" || ev.Action == ActionCheckpoint {
		return store.AuditRecord{}, fmt.Errorf("audit: action %q is not an event's", ev.Action)
	}
	p := &pending{ev: ev, wake: make(chan struct{})}
	l.mu.Lock()
	l.queue = append(l.queue, p)
	lead := !l.writing
	l.writing = true
	if l.full != nil && len(l.queue) >= l.want {
		close(l.full)
		l.full = nil
	}
	l.mu.Unlock()
	if !lead {
		<-p.wake // the batch holding p is written, or p is to write the next one
	}
	if lead || p.lead {
		l.linger()
		l.writeQueue(ctx)
	}
	if p.err != nil {
		return p.rec, fmt.Errorf("audit: %w", p.err)
	}
	rec := p.rec
	// This process's count may be stale (another one may have checkpointed since); checkpoint
	// asks the chain. TryLock: a goroutine already checkpointing covers this record too.
	if rec.Seq-l.lastCheckpoint.Load() >= l.opts.Every && l.checkpointing.TryLock() {
		defer l.checkpointing.Unlock()
		// The checkpoint is the log's, not this caller's: a client that hangs up must not
		// leave it unwritten (it was, as "audit checkpoint failed: context canceled").
		if _, err := l.checkpoint(context.WithoutCancel(ctx), true); err != nil {
			// The record is written; a late checkpoint is retried on the next append or tick.
			l.log.Error("audit checkpoint failed", "err", err)
		}
	}
	return rec, nil
}

// linger lets more appends join the next batch (see Options.Linger): when the previous commit
// carried two or more and ended lately, it waits until as many are queued, or Linger has passed.
func (l *Log) linger() {
	if l.opts.Linger <= 0 {
		return
	}
	l.mu.Lock()
	want := min(l.lastBatch, l.opts.LingerBatch)
	if want < 2 || len(l.queue) >= want || l.now().Sub(l.lastEnd) >= 4*l.opts.Linger {
		l.mu.Unlock()
		return
	}
	full := make(chan struct{})
	l.want, l.full = want, full
	l.lingers.Add(1)
	l.mu.Unlock()
	t := time.NewTimer(l.opts.Linger)
	select {
	case <-full:
	case <-t.C:
	}
	t.Stop()
	l.mu.Lock()
	if l.full == full {
		l.full = nil
	}
	l.mu.Unlock()
}

// pending is an append waiting for its batch.
type pending struct {
	ev   Event
	rec  store.AuditRecord
	err  error
	lead bool          // set before wake is closed: write the next batch
	wake chan struct{} // closed when rec/err are set, or when lead is
}

// writeQueue writes everything queued in one commit, hands the writing to the first append that
// queued meanwhile (if any), then wakes the batch. It runs in the leader's goroutine, under a
// context that the leader's cancellation does not end: the batch carries others' records.
//
// The queue is taken inside the store's transaction, once the last record is read, not before
// it begins: appends that queue while the transaction starts ride in this commit instead of
// waiting a whole commit for the next one.
func (l *Log) writeQueue(ctx context.Context) {
	var batch []*pending
	var called bool
	take := func() {
		l.mu.Lock()
		batch = append(batch, l.queue...)
		l.queue = nil
		l.mu.Unlock()
	}
	start := l.now()
	ctx = context.WithoutCancel(ctx)
	recs, err := l.st.AppendAudit(ctx, func(last *store.AuditRecord) ([]store.AuditRecord, error) {
		called = true
		first := last
		take() // a store that calls again (a retry) gets the earlier ones and any new ones
		out := make([]store.AuditRecord, 0, len(batch))
		for _, p := range batch {
			ev := p.ev
			out = append(out, l.link(last, store.AuditRecord{Actor: ev.Actor, Action: ev.Action, Key: ev.Key, Digest: ev.Digest,
				Result: ev.Result, RequestID: ev.RequestID, Detail: ev.Detail, Subject: ev.Subject, Transaction: ev.Transaction}))
			last = &out[len(out)-1]
		}
		return out, l.seal(ctx, first, out)
	})
	if !called { // the transaction failed before reaching us: the queue, the leader in it, gets the error
		take()
		if err == nil {
			err = errors.New("the store wrote nothing")
		}
	}
	if err == nil && len(recs) != len(batch) {
		err = fmt.Errorf("the store returned %d records for %d", len(recs), len(batch))
	}
	if err == nil {
		l.commits.Add(1)
		l.committed.Add(int64(len(batch)))
		l.commitNanos.Add(int64(l.now().Sub(start)))
		if len(recs) > 0 {
			l.wrote(recs[0].Seq, recs[len(recs)-1].Seq)
		}
	}
	l.mu.Lock()
	if err == nil {
		l.lastBatch, l.lastEnd = len(batch), l.now()
	}
	if len(l.queue) > 0 {
		l.queue[0].lead = true
		close(l.queue[0].wake)
	} else {
		l.writing = false
	}
	l.mu.Unlock()
	for i, p := range batch {
		if err != nil {
			p.err = err
		} else {
			p.rec = recs[i]
		}
		if !p.lead { // a former leader is not waiting on wake (and has closed it once already)
			close(p.wake)
		}
	}
}

// wrote notes that this process appended records first..last. Only a run that follows the
// previous one without a gap extends it, so own never covers a record of another process.
func (l *Log) wrote(first, last int64) {
	l.ownMu.Lock()
	defer l.ownMu.Unlock()
	if first == l.ownTo+1 && l.ownTo > 0 {
		l.ownTo = last
	} else {
		l.ownFrom, l.ownTo = first, last
	}
}

// ownAfter reports whether every record in (from, to] was appended by this process.
func (l *Log) ownAfter(from, to int64) bool {
	l.ownMu.Lock()
	defer l.ownMu.Unlock()
	return l.ownTo > 0 && l.ownFrom <= from+1 && to <= l.ownTo
}

// due reports whether a checkpoint is owed after record seq, from the chain: only the last
// Every records can hold a checkpoint that makes one not owed yet. Records up to seq never
// change, so they are read outside the log's lock. When this process appended every record
// since the last checkpoint it knows of (it holds l.checkpointing, so it knows all of its own),
// there is none to find: reading Every records back for each checkpoint cost about as much
// CPU a record as the record's own commit.
func (l *Log) due(ctx context.Context, seq int64) bool {
	if last := l.lastCheckpoint.Load(); l.ownAfter(last, seq) {
		return seq-last >= l.opts.Every
	}
	from, found := max(1, seq-l.opts.Every+1), int64(0)
	for from <= seq {
		page, err := l.st.AuditRecords(ctx, from, int(min(seq-from+1, 1000)))
		if err != nil || len(page) == 0 {
			return true // cannot tell: one checkpoint too many is harmless, one missing is not
		}
		for _, r := range page {
			if r.Action == ActionCheckpoint && r.Seq <= seq {
				found = r.Seq
			}
		}
		from = page[len(page)-1].Seq + 1
	}
	if found > 0 {
		l.sawCheckpoint(found)
	}
	return seq-found >= l.opts.Every
}

func (l *Log) sawCheckpoint(seq int64) {
	for {
		cur := l.lastCheckpoint.Load()
		if seq <= cur || l.lastCheckpoint.CompareAndSwap(cur, seq) {
			return
		}
	}
}

// RecordSignature is the key layer's audit hook: one record a private-key operation, durable
// before the signature is handed back.
func (l *Log) RecordSignature(ctx context.Context, ev hsm.SignEvent) error {
	result := "ok"
	if ev.Err != nil {
		result = "error: " + ev.Err.Error()
	}
	d := map[string]string{}
	for k, v := range ev.Detail {
		d[k] = v
	}
	d["purpose"], d["hash"] = string(ev.Purpose), hashName(ev.Hash) // the key layer's word, not the caller's
	detail, _ := json.Marshal(d)
	var t *store.Transaction
	c, _ := ctx.Value(riderKey{}).(*Rider)
	if ev.Err == nil && c != nil && c.key == ev.KeyURI && c.taken.CompareAndSwap(false, true) {
		t = &c.t
	}
	_, err := l.Append(ctx, Event{Actor: ev.Actor, Action: "sign", Key: ev.KeyURI, Digest: ev.Digest,
		Result: result, RequestID: ev.RequestID, Detail: detail, Transaction: t})
	if t != nil && err == nil {
		c.written.Store(true)
	}
	return err
}

// Rider is a transaction waiting for the audit record of a signature to ride on (see
// WithTransaction).
type Rider struct {
	key            string
	t              store.Transaction
	taken, written atomic.Bool
}

type riderKey struct{}

// WithTransaction has RecordSignature store t in the same commit as the audit record of the
// first successful signature by keyURI made with the returned context: one durable commit for
// both instead of two (a seal's second commit was 12 % of its server CPU). Written reports
// whether that happened; when it did not (no such signature, or an audit hook other than Log),
// the caller stores t itself.
func WithTransaction(ctx context.Context, keyURI string, t store.Transaction) (context.Context, *Rider) {
	c := &Rider{key: keyURI, t: t}
	return context.WithValue(ctx, riderKey{}, c), c
}

// Written reports whether the transaction is durable with its signature's audit record.
func (c *Rider) Written() bool { return c.written.Load() }

func hashName(h crypto.Hash) string {
	if h == 0 {
		return "none"
	}
	return h.String()
}

// Statement is what a checkpoint signs.
type Statement struct {
	Seq  int64     `json:"seq"`
	Head string    `json:"head"` // hex SHA-256 of record Seq-1
	Time time.Time `json:"time"`
	Key  string    `json:"key"`
}

// Checkpoint appends a signed checkpoint over the current head, unless the head already is one
// (then it returns a zero record and no error).
func (l *Log) Checkpoint(ctx context.Context) (store.AuditRecord, error) {
	l.checkpointing.Lock()
	defer l.checkpointing.Unlock()
	return l.checkpoint(ctx, false)
}

// optimisticTries is how often a checkpoint is signed outside the log's lock before it is signed
// under it. Outside, a slow HSM holds up no appender; but the statement names the head, so a
// record appended meanwhile by anyone voids it. Under load that keeps happening; signing under
// the lock then still ends it.
const optimisticTries = 3

// checkpoint needs l.checkpointing held. With onlyIfDue it appends one only when Every records
// have passed since the last checkpoint in the chain. That is exact whenever the statement was
// signed outside the lock: the chain was read up to the head the statement names, and the
// statement is appended only if that is still the head. Signed under the lock it is not looked
// up, so writers racing in several processes may rarely add one checkpoint too many.
//
// A statement signed outside the lock and then voided is a use of the audit key that no record
// mentions. It gives nobody anything: it names a (seq, head) that became an ordinary record,
// and putting it there instead changes the hash every later checkpoint covers.
func (l *Log) checkpoint(ctx context.Context, onlyIfDue bool) (store.AuditRecord, error) {
	for try := 0; ; try++ {
		var signed *store.AuditRecord // nil: sign under the lock
		if try < optimisticTries && !l.busy() {
			head, err := l.head(ctx)
			if err != nil {
				return store.AuditRecord{}, fmt.Errorf("audit: checkpoint: %w", err)
			}
			if head == nil || head.Action == ActionCheckpoint || onlyIfDue && !l.due(ctx, head.Seq) {
				return store.AuditRecord{}, nil
			}
			r, err := l.signed(head)
			if err != nil {
				return store.AuditRecord{}, err
			}
			signed = &r
		}
		var nothing, moved bool
		recs, err := l.st.AppendAudit(ctx, func(last *store.AuditRecord) ([]store.AuditRecord, error) {
			switch {
			case last == nil || last.Action == ActionCheckpoint:
				nothing = true
				return nil, errNotAppended
			case signed == nil:
				r, err := l.signed(last)
				if err != nil {
					return nil, err
				}
				recs := []store.AuditRecord{r}
				return recs, l.seal(ctx, last, recs)
			case last.Seq+1 != signed.Seq || !bytes.Equal(last.Hash, signed.PrevHash):
				moved = true
				return nil, errNotAppended
			}
			recs := []store.AuditRecord{*signed}
			return recs, l.seal(ctx, last, recs)
		})
		switch {
		case nothing:
			return store.AuditRecord{}, nil
		case moved:
			continue
		case err != nil:
			return store.AuditRecord{}, fmt.Errorf("audit: checkpoint: %w", err)
		}
		rec := recs[0]
		l.wrote(rec.Seq, rec.Seq)
		if signed == nil {
			l.log.Debug("audit checkpoint signed under the log's lock: appends were under way", "seq", rec.Seq, "tries", try)
		}
		l.sawCheckpoint(rec.Seq)
		return rec, nil
	}
}

// busy reports whether appends are being written or queued: a statement signed outside the lock
// now would name a head that is about to move, wasting a read, a signature and a transaction.
func (l *Log) busy() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.writing || len(l.queue) > 0
}

// signed makes the checkpoint record that follows head.
func (l *Log) signed(head *store.AuditRecord) (store.AuditRecord, error) {
	r := l.link(head, store.AuditRecord{Actor: "vula", Action: ActionCheckpoint, Key: l.keyURI, Result: "ok"})
	st, err := json.Marshal(Statement{Seq: r.Seq, Head: hex.EncodeToString(head.Hash), Time: r.Time, Key: l.keyURI})
	if err != nil {
		return r, err
	}
	d := sha256.Sum256(st)
	sig, err := l.signer.Sign(rand.Reader, d[:], crypto.SHA256)
	if err != nil {
		return r, fmt.Errorf("audit: signing checkpoint: %w", err)
	}
	r.Detail, r.Digest, r.Signature = st, d[:], sig
	r.Hash = Hash(r)
	return r, nil
}

// head reads the last record. The seam reads it only under the write lock, so this borrows
// AppendAudit for a moment and writes nothing.
func (l *Log) head(ctx context.Context) (*store.AuditRecord, error) {
	var head *store.AuditRecord
	var read bool
	_, err := l.st.AppendAudit(ctx, func(last *store.AuditRecord) ([]store.AuditRecord, error) {
		head, read = last, true
		return nil, errNotAppended
	})
	if !read {
		return nil, err
	}
	return head, nil
}

var errNotAppended = errors.New("audit: nothing to append")

// Run checkpoints every Interval until ctx ends.
func (l *Log) Run(ctx context.Context) {
	t := time.NewTicker(l.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := l.Checkpoint(ctx); err != nil {
				l.log.Error("audit checkpoint failed", "err", err)
			}
		}
	}
}
