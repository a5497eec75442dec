package e2e

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/digitorus/timestamp"

	"github.com/vula-eid/vula/internal/testenv"
)

// TestClockAgainstNTP serves with an NTP server whose clock is 5 s ahead: the service is not
// ready, naming the clock, and the TSA answers timeNotAvailable. Once the server agrees, the
// service becomes ready and tokens are granted.
func TestClockAgainstNTP(t *testing.T) {
	vulaBinary(t)
	srv := testenv.NTP(t, 5*time.Second)
	r := startReplica(t, []string{"VULA_TSA_NTP_SERVERS=" + srv.Addr, "VULA_TSA_NTP_INTERVAL=1s"})
	rep := r.ready(t, http.StatusServiceUnavailable)
	comps, _ := rep["components"].(map[string]any)
	if st, _ := comps["clock"].(map[string]any); st["ok"] != false {
		t.Fatalf("clock 5 s off NTP but %v", rep)
	}
	d := sha256.Sum256([]byte("x"))
	q, _ := (&timestamp.Request{HashAlgorithm: crypto.SHA256, HashedMessage: d[:]}).Marshal()
	post := func() []byte {
		// /tsa is served once the PKI is open; the clock check comes after.
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			resp, err := http.Post("http://"+r.addr+"/tsa", "application/timestamp-query", bytes.NewReader(q))
			if err == nil && resp.StatusCode == http.StatusOK {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				return b
			}
			if time.Now().After(deadline) {
				t.Fatalf("POST /tsa: %v %v\n%s", err, resp, r.logs)
			}
		}
	}
	if _, err := timestamp.ParseResponse(post()); err == nil || !bytes.Contains([]byte(err.Error()), []byte("time source")) {
		t.Fatalf("a token with the clock off: %v", err)
	}
	srv.SetShift(0)
	r.ready(t, http.StatusOK)
	if _, err := timestamp.ParseResponse(post()); err != nil {
		t.Fatalf("no token with the clock agreeing: %v", err)
	}
}
