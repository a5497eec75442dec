package pid

import (
	"bytes"
	"encoding/base64"
	"errors"
	"html/template"
	"image/png"
	"net/http"

	"github.com/boombuler/barcode"
	"github.com/boombuler/barcode/qr"

	"github.com/vula-eid/vula/internal/store"
)

// offerPage shows an offer made at the registration desk as a QR code for the person's wallet,
// and as a link for a wallet on the same device. The transaction code is never on the page.
func (h Handler) offerPage(w http.ResponseWriter, r *http.Request) {
	// Typed as trusted URLs: both are made here (a PNG of our own, our own offer URI), and
	// html/template would otherwise blank the data: and openid-credential-offer: schemes.
	type data struct{ QR, URI template.URL }
	uri, err := h.S.OfferURI(r.Context(), r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) || (err == nil && len(r.PathValue("id")) > 64) {
		h.Pages.Render(w, r, http.StatusNotFound, "pid_offer", data{})
		return
	}
	if err != nil {
		h.oauthError(w, r, http.StatusInternalServerError, "server_error", err)
		return
	}
	code, err := qr.Encode(uri, qr.M, qr.Auto)
	if err == nil {
		code, err = barcode.Scale(code, 256, 256)
	}
	var buf bytes.Buffer
	if err == nil {
		err = png.Encode(&buf, code)
	}
	if err != nil {
		h.oauthError(w, r, http.StatusInternalServerError, "server_error", err)
		return
	}
	h.Pages.Render(w, r, http.StatusOK, "pid_offer", data{QR: template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(buf.Bytes())),
		URI: template.URL(uri)})
}
