package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/oauth2/clientcredentials"
)

// renewCmd renews a signed document's archive timestamp through POST /api/v1/renew, as the
// institution's sealing client: a PDF gets one more document timestamp, an XML signature one
// more xadesv141:ArchiveTimeStamp, a CAdES signature or an ASiC-E container one more archive
// timestamp. The output is written under a temporary name and renamed when complete.
func renewCmd(g *globals) *cobra.Command {
	var o struct {
		out, url, clientID, secretFile string
		data                           []string
	}
	cmd := &cobra.Command{
		Use:   "renew FILE",
		Short: "Add an archive timestamp to a signed document at B-LT or B-LTA (before its timestamps' certificates expire)",
		Long: "Add an archive timestamp to a signed document (PAdES, XAdES, CAdES, ASiC-E) at B-LT or B-LTA through the\n" +
			"renewal API, as a sealing client (the same client and secret as vula seal). The new timestamp covers the\n" +
			"signature, its validation data and every earlier timestamp, so the document stays verifiable after the\n" +
			"earlier timestamps' TSA certificates expire. A detached XAdES signature needs its data files (--data).",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			secret, base, err := g.sealingClient(o.clientID, o.secretFile, o.url)
			if err != nil {
				return err
			}
			in := args[0]
			if o.out == "" {
				ext := filepath.Ext(in)
				o.out = strings.TrimSuffix(in, ext) + "-renewed" + ext
			}
			body, ct, err := renewBody(in, o.data)
			if err != nil {
				return err
			}
			cc := clientcredentials.Config{ClientID: o.clientID, ClientSecret: secret, TokenURL: base + "/oauth2/token", Scopes: []string{"seal"}}
			req, err := http.NewRequestWithContext(cmd.Context(), http.MethodPost, base+"/api/v1/renew?name="+url.QueryEscape(filepath.Base(in)), body)
			if err != nil {
				return err
			}
			req.Header.Set("Content-Type", ct)
			resp, err := cc.Client(cmd.Context()).Do(req)
			if err != nil {
				return err
			}
			defer func() { _ = resp.Body.Close() }() // read only
			if resp.StatusCode != http.StatusOK {
				var p struct{ Title, Detail string }
				_ = json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&p) // the status is the error
				if p.Detail == "" {
					p.Detail = p.Title
				}
				return fmt.Errorf("renewal refused: %d %s", resp.StatusCode, p.Detail)
			}
			if err := writeAtomic(o.out, resp.Body); err != nil {
				return err
			}
			return say(cmd.OutOrStdout(), "renewed %s -> %s (transaction %s)\n", in, o.out, resp.Header.Get("X-Vula-Transaction"))
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.out, "out", "", "where to write the renewed document (default FILE with -renewed before its ending)")
	f.StringVar(&o.url, "url", "", "Vula's base URL (default base_url of the configuration)")
	f.StringVar(&o.clientID, "client-id", "", "the sealing client")
	f.StringVar(&o.secretFile, "client-secret-file", "", "file holding the client secret (else VULA_CLIENT_SECRET)")
	f.StringArrayVar(&o.data, "data", nil, "a data file a detached XAdES signature names (repeatable)")
	return cmd
}

// renewBody is the request body: the file alone, or with data files multipart/form-data with
// the signed file first.
func renewBody(in string, data []string) (io.Reader, string, error) {
	if len(data) == 0 {
		b, err := os.ReadFile(in)
		if err != nil {
			return nil, "", err
		}
		return bytes.NewReader(b), "application/octet-stream", nil
	}
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, p := range append([]string{in}, data...) {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, "", err
		}
		w, err := mw.CreateFormFile("file", filepath.Base(p))
		if err != nil {
			return nil, "", err
		}
		if _, err := w.Write(b); err != nil {
			return nil, "", err
		}
	}
	if err := mw.Close(); err != nil {
		return nil, "", err
	}
	return &buf, mw.FormDataContentType(), nil
}

// writeAtomic writes r to dst through a temporary file in its folder, renamed when complete.
func writeAtomic(dst string, r io.Reader) error {
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".partial-*")
	if err != nil {
		return err
	}
	defer func() { _ = os.Remove(tmp.Name()) }() // after the rename there is nothing to remove
	if _, err := io.Copy(tmp, r); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}
