package store

import (
	"context"
	"time"
)

// IssuedPID is one credential of person identification data the wallet issuer made: which
// person, in which format, where its status sits in which status list, and whether it is
// revoked. The claim values are not kept: the person record holds them.
type IssuedPID struct {
	ID        string // random, unique
	SubjectID string // the person
	Format    string // dc+sd-jwt or mso_mdoc
	KeyURI    string // the issuer key that signed it
	List      int    // status list number, from 1
	Index     int    // index in the list; (List, Index) is unique
	Issued    time.Time
	Expires   time.Time
	Revoked   bool
	RevokedAt time.Time
}

// PIDs keeps the issued credentials of the wallet issuer and their status.
type PIDs interface {
	// CreatePID stores p; ErrConflict if its ID or its (List, Index) is taken.
	CreatePID(ctx context.Context, p IssuedPID) error
	// PIDsOf lists the person's credentials, oldest first.
	PIDsOf(ctx context.Context, subjectID string) ([]IssuedPID, error)
	// CountPIDs is how many credentials list holds.
	CountPIDs(ctx context.Context, list int) (int, error)
	// RevokePIDs revokes every unrevoked credential of the person at at and returns how many it
	// revoked (0 is not an error).
	RevokePIDs(ctx context.Context, subjectID string, at time.Time) (int, error)
	// RevokePID revokes the person's credential id at at and reports whether it was unrevoked
	// until now; ErrNotFound when the person has no credential id (another's is not theirs).
	RevokePID(ctx context.Context, subjectID, id string, at time.Time) (bool, error)
	// RevokedPIDs lists the indexes of the revoked credentials of list: those revoked by
	// RevokePIDs, and every credential of a person whose eID means is revoked (EIDRevoked) or
	// who is no longer in the store, at once, whoever changed the person.
	RevokedPIDs(ctx context.Context, list int) ([]int, error)
}
