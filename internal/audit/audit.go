// Package audit is Vula's append-only, hash-chained audit log.
//
// Every record holds the SHA-256 of the record before it, so that changing, removing or
// reordering a record breaks the chain at that record. Every N records (and every T seconds when
// something was written) a checkpoint record is appended, signed by an audit-purpose key of the
// key layer; it states the sequence number and hash of the head it covers, so that rewriting the
// whole chain after a point needs the audit key, and a truncated tail is caught by the operator's
// last known checkpoint (Options.ExpectHead).
//
// A record's hash is SHA-256 over this byte string, which an auditor can rebuild without Vula:
//
//	"vula-audit-v1"
//	seq      8 bytes, big-endian
//	time     8 bytes, big-endian, microseconds since 1970-01-01 UTC
//	then actor, action, key, digest, result, request_id, detail, signature, prev_hash,
//	each as a 4-byte big-endian length followed by its bytes.
//
// A checkpoint's Detail is the JSON statement {"seq","head","time","key"} (head: hex hash of the
// record before it) and its Signature is the audit key's signature over SHA-256(Detail): ASN.1
// DER for ECDSA, PKCS#1 v1.5 for RSA.
package audit

import (
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
	"sync"
	"sync/atomic"
	"time"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/internal/store"
	"github.com/vula-eid/vula/internal/tsa"
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
}

// ActionCheckpoint is the action of checkpoint records.
const ActionCheckpoint = "checkpoint"

// Options tune checkpoints.
type Options struct {
	// Every appends a checkpoint after this many records since the last one (default 1000).
	Every int64
	// Interval appends a checkpoint this often when records were written since the last one
	// (default one minute); used by Run.
	Interval time.Duration
}

// Log appends to the chain kept by a store.AuditLog.
type Log struct {
	st     store.AuditLog
	now    func() time.Time
	log    *slog.Logger
	opts   Options
	keyURI string
	signer crypto.Signer // the audit key, NOT instrumented: its use is recorded by the checkpoint itself

	lastCheckpoint atomic.Int64 // seq of the newest checkpoint seen by this process
	checkpointing  sync.Mutex
}

var _ hsm.AuditHook = (*Log)(nil)

// New makes a log over st, checkpointed with the audit key at keyURI of keys. keys must be the
// un-instrumented manager: an instrumented signer would audit its own checkpoint signature,
// recursively.
func New(ctx context.Context, st store.AuditLog, keys hsm.Manager, keyURI string, opts Options, now func() time.Time, log *slog.Logger) (*Log, error) {
	if opts.Every <= 0 {
		opts.Every = 1000
	}
	if opts.Interval <= 0 {
		opts.Interval = time.Minute
	}
	s, err := keys.Signer(ctx, keyURI, hsm.PurposeAudit)
	if err != nil {
		return nil, fmt.Errorf("audit: checkpoint key: %w", err)
	}
	return &Log{st: st, now: now, log: log, opts: opts, keyURI: keyURI, signer: s}, nil
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
// when Every records have passed since the last one.
func (l *Log) Append(ctx context.Context, ev Event) (store.AuditRecord, error) {
	rec, err := l.st.AppendAudit(ctx, func(last *store.AuditRecord) (store.AuditRecord, error) {
		return l.link(last, store.AuditRecord{Actor: ev.Actor, Action: ev.Action, Key: ev.Key, Digest: ev.Digest,
			Result: ev.Result, RequestID: ev.RequestID, Detail: ev.Detail}), nil
	})
	if err != nil {
		return rec, fmt.Errorf("audit: %w", err)
	}
	if rec.Seq-l.lastCheckpoint.Load() >= l.opts.Every {
		if _, err := l.Checkpoint(ctx); err != nil {
			// The record is written; a late checkpoint is retried on the next append or tick.
			l.log.Error("audit checkpoint failed", "err", err)
		}
	}
	return rec, nil
}

// RecordSignature is the key layer's audit hook: one record a private-key operation, durable
// before the signature is handed back.
func (l *Log) RecordSignature(ctx context.Context, ev hsm.SignEvent) error {
	result := "ok"
	if ev.Err != nil {
		result = "error: " + ev.Err.Error()
	}
	detail, _ := json.Marshal(map[string]string{"purpose": string(ev.Purpose), "hash": hashName(ev.Hash)})
	_, err := l.Append(ctx, Event{Actor: ev.Actor, Action: "sign", Key: ev.KeyURI, Digest: ev.Digest,
		Result: result, RequestID: ev.RequestID, Detail: detail})
	return err
}

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

// Checkpoint appends a signed checkpoint over the current head, unless the head already is one.
func (l *Log) Checkpoint(ctx context.Context) (store.AuditRecord, error) {
	l.checkpointing.Lock()
	defer l.checkpointing.Unlock()
	var skipped bool
	rec, err := l.st.AppendAudit(ctx, func(last *store.AuditRecord) (store.AuditRecord, error) {
		if last == nil || last.Action == ActionCheckpoint {
			skipped = true
			return store.AuditRecord{}, errSkip
		}
		r := l.link(last, store.AuditRecord{Actor: "vula", Action: ActionCheckpoint, Key: l.keyURI, Result: "ok"})
		st, err := json.Marshal(Statement{Seq: r.Seq, Head: hex.EncodeToString(last.Hash), Time: r.Time, Key: l.keyURI})
		if err != nil {
			return r, err
		}
		d := sha256.Sum256(st)
		// Signed under the log's lock, so the statement's head is still the head when written.
		sig, err := l.signer.Sign(rand.Reader, d[:], crypto.SHA256)
		if err != nil {
			return r, fmt.Errorf("signing checkpoint: %w", err)
		}
		r.Detail, r.Digest, r.Signature = st, d[:], sig
		r.Hash = Hash(r)
		return r, nil
	})
	if skipped {
		return store.AuditRecord{}, nil
	}
	if err != nil {
		return rec, fmt.Errorf("audit: checkpoint: %w", err)
	}
	l.lastCheckpoint.Store(rec.Seq)
	return rec, nil
}

var errSkip = errors.New("nothing to checkpoint")

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

// RecordToken records a timestamp token (serial, message imprint, time, requester) before the
// TSA hands it out.
func (l *Log) RecordToken(ctx context.Context, t tsa.Token) error {
	detail, _ := json.Marshal(map[string]string{"serial": t.Serial.Text(16), "hash": hashName(t.Hash),
		"time": t.Time.UTC().Format(time.RFC3339Nano), "requester": t.Requester})
	_, err := l.Append(ctx, Event{Actor: t.Requester, Action: "timestamp", Digest: t.Digest, Result: "ok", Detail: detail})
	return err
}
