package pid

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/vula-eid/vula/internal/audit"
	"github.com/vula-eid/vula/internal/auth"
	"github.com/vula-eid/vula/internal/store"
)

// The person's own page: the PIDs issued to them (format, dates, status; never a claim value or
// a key) and the revocation of one or all on their request, after a confirmation. The person is
// the one logged in at the provider in this browser (auth.Sessions), at substantial or higher;
// the forms carry that session's CSRF token.

// minePath is the page's path.
const minePath = "/pid/credentials"

type mineLine struct {
	ID, FormatName, Issued, Expires, Status, StatusKey string
}

type mineData struct {
	NeedLogin, Confirm, Done, AnyValid bool
	CSRF, Target                       string
	Creds                              []mineLine
}

// mineSession is the logged-in person of the request, when the login reached substantial.
func (h Handler) mineSession(r *http.Request) (auth.Session, bool) {
	s, ok := h.Sessions.Session(r)
	return s, ok && auth.AtLeast(s.ACR, auth.LoASubstantial)
}

// lines are the page's lines for the person's credentials; only those matching keep when it is
// not nil.
func (h Handler) lines(ctx context.Context, subject string, keep func(store.IssuedPID) bool) ([]mineLine, error) {
	recs, err := h.S.recs.PIDsOf(ctx, subject)
	if err != nil {
		return nil, err
	}
	now := h.S.now()
	var out []mineLine
	for _, p := range recs {
		if keep != nil && !keep(p) {
			continue
		}
		l := mineLine{ID: p.ID, FormatName: map[string]string{FormatSDJWT: "SD-JWT VC", FormatMdoc: "mdoc (ISO/IEC 18013-5)"}[p.Format],
			Issued: p.Issued.UTC().Format(time.DateOnly), Expires: p.Expires.UTC().Format(time.DateOnly), Status: "valid"}
		switch {
		case p.Revoked:
			l.Status = "revoked"
		case !now.Before(p.Expires):
			l.Status = "expired"
		}
		l.StatusKey = "pid.mine." + l.Status
		out = append(out, l)
	}
	return out, nil
}

func (h Handler) minePage(w http.ResponseWriter, r *http.Request) {
	s, ok := h.mineSession(r)
	if !ok {
		h.Pages.Render(w, r, http.StatusUnauthorized, "pid_mine", mineData{NeedLogin: true})
		return
	}
	lines, err := h.lines(r.Context(), s.Subject, nil)
	if err != nil {
		h.pageUnavailable(w, r, err)
		return
	}
	d := mineData{CSRF: s.CSRF, Creds: lines, Done: r.URL.Query().Get("done") == "1"}
	for _, l := range lines {
		d.AnyValid = d.AnyValid || l.Status == "valid"
	}
	h.Pages.Render(w, r, http.StatusOK, "pid_mine", d)
}

// mineRevoke revokes one of the person's credentials, or all ("all"): first a confirmation
// page, then, with confirm=yes, the revocation, audited with the person as the actor.
func (h Handler) mineRevoke(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	s, ok := h.mineSession(r)
	if !ok {
		h.Pages.Render(w, r, http.StatusUnauthorized, "pid_mine", mineData{NeedLogin: true})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	if r.ParseForm() != nil || subtle.ConstantTimeCompare([]byte(r.PostForm.Get("csrf")), []byte(s.CSRF)) != 1 || s.CSRF == "" {
		http.Error(w, "the form is stale: reload the page", http.StatusForbidden)
		return
	}
	target := r.PostForm.Get("credential")
	if target == "" || len(target) > 64 {
		http.Error(w, "no credential named", http.StatusBadRequest)
		return
	}
	if r.PostForm.Get("confirm") != "yes" {
		lines, err := h.lines(ctx, s.Subject, func(p store.IssuedPID) bool { return !p.Revoked && (target == "all" || p.ID == target) })
		if err != nil {
			h.pageUnavailable(w, r, err)
			return
		}
		if len(lines) == 0 && target != "all" {
			http.Error(w, "no such credential of yours", http.StatusNotFound)
			return
		}
		h.Pages.Render(w, r, http.StatusOK, "pid_mine", mineData{Confirm: true, CSRF: s.CSRF, Target: target, Creds: lines})
		return
	}
	actor := "person:" + s.Subject
	var err error
	if target == "all" {
		_, err = h.S.Revoke(ctx, s.Subject, actor, "the person's request")
	} else {
		err = h.S.RevokeOne(ctx, s.Subject, target, actor, "the person's request")
	}
	if errors.Is(err, store.ErrNotFound) {
		http.Error(w, "no such credential of yours", http.StatusNotFound)
		return
	}
	if err != nil {
		h.pageUnavailable(w, r, err)
		return
	}
	http.Redirect(w, r, minePath+"?done=1", http.StatusSeeOther)
}

// pageUnavailable answers a page whose store failed: 503 with Retry-After when it is down.
func (h Handler) pageUnavailable(w http.ResponseWriter, r *http.Request, err error) {
	h.Log.ErrorContext(r.Context(), "pid page", "err", err)
	if errors.Is(err, store.ErrUnavailable) {
		w.Header().Set("Retry-After", "5")
		http.Error(w, "the service is unavailable for a moment: try again", http.StatusServiceUnavailable)
		return
	}
	http.Error(w, "the page failed", http.StatusInternalServerError)
}

// RevokeOne revokes the person's credential id on request of actor; store.ErrNotFound when the
// person has no such credential. The next status list served shows it.
func (s *Service) RevokeOne(ctx context.Context, subjectID, id, actor, reason string) error {
	first, err := s.recs.RevokePID(ctx, subjectID, id, s.now())
	if err != nil || !first {
		return err
	}
	detail, _ := json.Marshal(map[string]any{"subject": subjectID, "credentials": []string{id}, "revoked": 1, "reason": reason})
	if _, err := s.audit.Append(ctx, audit.Event{Actor: actor, Action: "pid.revoke", Result: "ok", Detail: detail}); err != nil {
		return fmt.Errorf("pid: audit of the revocation: %w", err)
	}
	return nil
}
