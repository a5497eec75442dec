package csc

import (
	"context"
	"errors"
	"fmt"

	"github.com/vula-eid/vula/internal/auth"
	"github.com/vula-eid/vula/internal/store"
)

// A credential may require its authorizations to come from a login at a higher level than
// the substantial every credential authorization needs (a qualified signature's key at LoA
// high, say). The requirement is kept per credential id in the durable store's settings, so
// every replica reads the same.

func levelSetting(credentialID string) string { return "csc.credential_level:" + credentialID }

// SetCredentialLevel makes authorizations of credential id require a login at level (one of
// auth.Levels); LoASubstantial is the default and removes the requirement.
func (s *Service) SetCredentialLevel(ctx context.Context, subject, id, level string) error {
	if auth.LevelOf(level) < 0 {
		return fmt.Errorf("csc: level %q: want one of %v", level, auth.Levels)
	}
	if _, err := s.Credential(ctx, subject, id); err != nil {
		return err
	}
	if !auth.AtLeast(level, auth.LoAHigh) {
		return s.recs.DeleteSetting(ctx, levelSetting(id))
	}
	return s.recs.PutSetting(ctx, levelSetting(id), []byte(level))
}

// CredentialLevel is the level an authorization of credential id requires: substantial unless
// SetCredentialLevel asked for more. It is read before the official is known (an unknown id
// requires substantial: the credential is checked after the login).
func (s *Service) CredentialLevel(ctx context.Context, id string) (string, error) {
	b, err := s.recs.Setting(ctx, levelSetting(id))
	if errors.Is(err, store.ErrNotFound) {
		return auth.LoASubstantial, nil
	}
	if err != nil {
		return "", err
	}
	return string(b), nil
}

var _ auth.CredentialLevels = (*Service)(nil)
