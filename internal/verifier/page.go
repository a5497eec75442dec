package verifier

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"html/template"
	"image/png"
	"net/http"
	"net/url"

	"github.com/boombuler/barcode"
	"github.com/boombuler/barcode/qr"
)

// pollSeconds is how often the page looks again for the wallet's answer (a Refresh header: no
// script needed).
const pollSeconds = "3"

// view is what the page of a transaction shows.
type view struct {
	DeepLink  string
	Pending   bool
	Accepted  bool
	Return    string // where the browser goes once the answer is in ("" when nowhere)
	Ancestors []string
}

// pageView reads transaction id for its page. The return address carries the relying
// party's state but not the response code: whoever shows the page is not necessarily the
// person whose wallet answered.
func (s *Service) pageView(ctx context.Context, id string) (view, error) {
	tx, _, err := s.load(ctx, id)
	if err != nil {
		return view{}, err
	}
	v := view{Pending: tx.Status == Pending, Accepted: tx.Status == Accepted, Ancestors: frameAncestors(tx.RedirectURI)}
	if v.Pending && !s.now().Before(tx.Expires) {
		return view{}, ErrNotFound
	}
	if tx.RedirectURI != "" {
		tx.ResponseCode = ""
		v.Return = s.returnURI(tx)
	}
	if v.Pending {
		v.DeepLink = s.created(tx, tx.Verifier).DeepLink
	}
	return v, nil
}

// page shows the request as a QR code for a wallet on another device and as a link for one
// on this device, and moves on to the relying party once the wallet has answered.
func (h Handler) page(w http.ResponseWriter, r *http.Request) {
	// Typed as trusted URLs: the PNG is our own and the deep link is made here; html/template
	// would otherwise blank the data: and openid4vp: schemes.
	type data struct {
		QR, URI  template.URL
		Done     bool
		Accepted bool
	}
	v, err := h.S.pageView(r.Context(), r.PathValue("id"))
	if errors.Is(err, ErrNotFound) {
		h.Pages.Render(w, r, http.StatusNotFound, "verify", data{})
		return
	}
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	if !v.Pending {
		if v.Return != "" {
			http.Redirect(w, r, v.Return, http.StatusSeeOther)
			return
		}
		h.Pages.RenderFramed(w, r, http.StatusOK, "verify", data{Done: true, Accepted: v.Accepted}, v.Ancestors)
		return
	}
	code, err := qr.Encode(v.DeepLink, qr.M, qr.Auto)
	if err == nil {
		code, err = barcode.Scale(code, 256, 256)
	}
	var buf bytes.Buffer
	if err == nil {
		err = png.Encode(&buf, code)
	}
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	// Look again in a few seconds, keeping the language chosen.
	w.Header().Set("Refresh", pollSeconds+"; url="+(&url.URL{Path: r.URL.Path, RawQuery: r.URL.RawQuery}).String())
	h.Pages.RenderFramed(w, r, http.StatusOK, "verify", data{QR: template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(buf.Bytes())),
		URI: template.URL(v.DeepLink)}, v.Ancestors)
}
