// Package store defines Vula's two state seams and their shared errors.
//
// Durable state (clients, persons, credentials, organizations, keys and certificates,
// revocations, signature transactions, the audit log) lives in a Durable store: SQLite in the
// embedded default, PostgreSQL when scaled out (package sqlstore implements both). Ephemeral state
// (sessions, one-time codes, replay caches, rate-limit counters) lives in an Ephemeral store:
// a SQLite file of its own in the embedded default (it survives a restart), memory in tests,
// Redis when scaled out. Backends return the sentinel errors below, wrapped
// with detail; callers test with errors.Is. Every backend passes its seam's conformance suite.
package store

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors shared by every backend.
var (
	ErrNotFound    = errors.New("store: not found")
	ErrConflict    = errors.New("store: conflict")
	ErrUnavailable = errors.New("store: unavailable")
)

// AuditRecord is one entry of the hash-chained audit log. The audit package computes Hash and
// PrevHash; the store only keeps records in Seq order.
type AuditRecord struct {
	Seq       int64     // 1, 2, 3, ... with no gaps
	Time      time.Time // UTC, microsecond precision (what both databases keep)
	Actor     string
	Action    string
	Key       string // key URI, "" if none
	Digest    []byte // what was signed, or the subject of the event
	Result    string
	RequestID string
	Detail    []byte // JSON, optional; a checkpoint's signed statement
	Signature []byte // a checkpoint's signature, nil otherwise
	PrevHash  []byte // Hash of record Seq-1 (32 zero bytes for Seq 1)
	Hash      []byte // SHA-256 over the record's canonical form, PrevHash included

	// Outside the chain (Hash covers neither): what the log's Merkle tree needs.
	Tree       []byte // the tree hashes this record adds, concatenated; nil on records from before the tree
	Checkpoint []byte // written only: the signed checkpoint of the log up to this record, kept as the latest
	// Subject is the person the event is about ("" for none): an index for AuditOf, not evidence
	// (the actor and the detail, inside the chain, say who).
	Subject string
	// Transaction, written only, is stored in the same commit as the record (as CreateTransaction
	// would store it): a seal's transaction rides on its signature's record, so a seal costs one
	// durable commit, not two.
	Transaction *Transaction
}

// AuditLog is the durable store's part that keeps the audit chain.
type AuditLog interface {
	// AppendAudit calls next with the current last record (nil when the log is empty) while
	// holding the log's write lock, and stores the records next returns, in order, as the new
	// tail, in one durable commit, before returning them. Each record's Seq MUST follow the one
	// before it. Appenders in any number of processes sharing the database MUST be serialised
	// so that the chain never forks. An error from next, or a record out of sequence, stores
	// nothing. A batch is what lets many concurrent appenders share one commit.
	//
	// A record with a Checkpoint makes it the log's latest checkpoint in the same commit, and a
	// record with a Transaction stores that transaction in the same commit. While
	// next runs, next may read the log through the store (AuditRecords, AuditTree,
	// AuditCheckpoint): every append committed before is visible and none can commit meanwhile.
	AppendAudit(ctx context.Context, next func(last *AuditRecord) ([]AuditRecord, error)) ([]AuditRecord, error)
	// AuditRecords returns up to limit records with Seq >= from, in Seq order.
	AuditRecords(ctx context.Context, from int64, limit int) ([]AuditRecord, error)
	// AuditOf returns up to limit records whose Subject is subject with Seq >= from, in Seq
	// order, through an index: its cost follows that person's records, not the log's size.
	AuditOf(ctx context.Context, subject string, from int64, limit int) ([]AuditRecord, error)
	// AuditTree returns the Tree of each record named in seqs that exists, by seq.
	AuditTree(ctx context.Context, seqs []int64) (map[int64][]byte, error)
	// AuditCheckpoint returns the latest checkpoint and the seq of the record it came with;
	// ErrNotFound when no record carried one.
	AuditCheckpoint(ctx context.Context) (seq int64, checkpoint []byte, err error)
	// FillAuditTree sets the Tree of records that have none (a log from before the tree); a
	// record that has one keeps it.
	FillAuditTree(ctx context.Context, trees map[int64][]byte) error
}
