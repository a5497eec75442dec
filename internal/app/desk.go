package app

import (
	"context"
	"log/slog"
	"time"

	"github.com/vula-eid/vula/internal/audit"
	"github.com/vula-eid/vula/internal/eid"
	"github.com/vula-eid/vula/internal/store"
	"github.com/vula-eid/vula/internal/web"
)

// deskPages builds the registration desk's pages over the desk service. printer makes the
// activation letters' PDFs; nil shows them as printable pages. loginKey seals the logins in
// progress (LoginKey).
func deskPages(base string, secure bool, loginKey *[32]byte, db eid.Store, l *audit.Log, printer eid.Printer, pages *web.Renderer, eph store.Ephemeral, log *slog.Logger) *eid.Pages {
	desk := eid.New(eid.Config{}, db, l, time.Now)
	return eid.NewPages(desk, eid.PagesConfig{Issuer: base, Secure: secure, Printer: printer, LoginKey: loginKey}, pages, eph, log, time.Now)
}

// deskClient registers the desk's public client at the provider, as portalClient does the
// portal's.
func deskClient(ctx context.Context, db store.Clients, redirect string) error {
	return pagesClient(ctx, db, eid.ClientID, "Vula registration desk", redirect)
}

// LetterPrinter is the desk's printer: letters sealed with the agency's seal.
var _ eid.Printer = (*LetterPrinter)(nil)
