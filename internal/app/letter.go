package app

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/internal/config"
	"github.com/vula-eid/vula/internal/eid"
	"github.com/vula-eid/vula/internal/letter"
	"github.com/vula-eid/vula/internal/seal"
	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/store"
	"github.com/vula-eid/vula/internal/tsa"
)

// LetterPrinter prints eID activation letters sealed with the agency's seal: the seal of the
// organization seal.agency names, made by the sealing service as for POST /api/v1/seal, at
// PAdES B-LT. The organization is looked up at every letter, so one onboarded while the
// server runs is used at once.
type LetterPrinter struct {
	cfg     config.Config
	sealing *seal.Service // with a timestamper: B-LT needs one
	orgs    store.Organizations
}

// NewLetterPrinter makes the printer; sealing must have a timestamper.
func NewLetterPrinter(cfg config.Config, sealing *seal.Service, orgs store.Organizations) *LetterPrinter {
	return &LetterPrinter{cfg: cfg, sealing: sealing, orgs: orgs}
}

// Agency is the organization whose seal seals the letters; seal.ErrNoSeal when seal.agency
// names none. A caller checks it before issuing a code it could not print.
func (p *LetterPrinter) Agency(ctx context.Context) (store.Organization, error) {
	id := p.cfg.Seal.Agency
	if id == "" {
		return store.Organization{}, fmt.Errorf("%w: seal.agency is not set, so no organization seals activation letters", seal.ErrNoSeal)
	}
	org, err := p.orgs.Organization(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return store.Organization{}, fmt.Errorf("%w: seal.agency %q is no organization (vula orgs create)", seal.ErrNoSeal, id)
	}
	return org, err
}

// Print renders the desk's letter l in lang and seals it: the desk's Printer.
func (p *LetterPrinter) Print(ctx context.Context, l eid.Letter, lang string) ([]byte, error) {
	org, err := p.Agency(ctx)
	if err != nil {
		return nil, err
	}
	d := letter.Data{GivenName: l.Person.GivenName, FamilyName: l.Person.FamilyName, PersonalNumber: l.Person.PersonalNumber,
		Code: l.Code, Expires: l.Expires}
	return letter.New(letter.Config{AgencyName: org.Name, BaseURL: p.cfg.BaseURL}, agencySeal{sealing: p.sealing, org: org.ID}).Print(ctx, d, lang)
}

// agencySeal seals a letter with the organization's seal at B-LT; the seal is a transaction of
// the sealing service like any other, its actor whoever the context names.
type agencySeal struct {
	sealing *seal.Service
	org     string
}

var _ letter.Sealer = agencySeal{}

func (s agencySeal) SealPDF(ctx context.Context, pdf []byte) ([]byte, error) {
	actor := hsm.ActorOf(ctx)
	if actor == "" {
		actor = "eid letter"
	}
	var out bytes.Buffer
	doc := seal.Document{Name: "activation-letter.pdf", MimeType: "application/pdf", R: bytes.NewReader(pdf), Size: int64(len(pdf))}
	if _, err := s.sealing.Seal(ctx, actor, s.org, []seal.Document{doc}, seal.Params{Format: seal.PAdES, Level: signing.LevelLT}, &out); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// Letters is the letter printer over the parts. Its seals are timestamped by the platform's
// TSA in this process, on a clock checked as the server checks its own.
func (p *Parts) Letters(ctx context.Context) (*LetterPrinter, error) {
	clock := tsa.NewSystemClock(clockConfig(p.Config), p.log)
	go clock.Run(ctx)
	// The first comparison with NTP, when servers are configured, runs in Run: wait for it a
	// little, or the TSA refuses the seal's timestamp.
	for i := 0; i < 50 && len(p.Config.TSA.NTPServers) > 0 && clock.Synced(ctx) != nil; i++ {
		time.Sleep(100 * time.Millisecond)
	}
	ts, err := newTSA(p.Config, p.Authority, clock, p.log)
	if err != nil {
		return nil, err
	}
	return NewLetterPrinter(p.Config, SealService(p.Config, p.Authority, p.Keys, p.DB, ts, p.log), p.DB), nil
}
