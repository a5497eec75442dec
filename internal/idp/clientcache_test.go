package idp

import (
	"context"
	"net/url"
	"sync/atomic"
	"testing"

	"github.com/vula-eid/vula/internal/store"
)

// countingClients counts the reads of clients from the durable store beneath it.
type countingClients struct {
	db    store.Clients
	reads atomic.Int64
}

var _ store.Clients = (*countingClients)(nil)

func (c *countingClients) Client(ctx context.Context, id string) (store.Client, error) {
	c.reads.Add(1)
	return c.db.Client(ctx, id)
}

func (c *countingClients) CreateClient(ctx context.Context, rec store.Client) error {
	return c.db.CreateClient(ctx, rec)
}

func (c *countingClients) Clients(ctx context.Context) ([]store.Client, error) {
	return c.db.Clients(ctx)
}

func (c *countingClients) UpdateClient(ctx context.Context, id string, update func(store.Client) (store.Client, error)) error {
	return c.db.UpdateClient(ctx, id, update)
}

func (c *countingClients) DeleteClient(ctx context.Context, id string) error {
	return c.db.DeleteClient(ctx, id)
}

// A client is read from the durable store once per clientCacheTTL, not once per token (on
// PostgreSQL each read was a round trip on the token path). A client deleted elsewhere (another
// replica, the CLI) is refused here once the TTL has passed; an unknown client is never kept.
func TestClientCache(t *testing.T) {
	f := newFixture(t)
	counted := &countingClients{db: f.db}
	f.p.st.clients = counted
	f.p.st.now = f.clock.Now
	secret := f.register(t, ClientSpec{ID: "tax-batch", GrantTypes: []string{"client_credentials"}, Scopes: []string{"seal"}})
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {"seal"}}
	for i := 0; i < 3; i++ {
		if code, body := postForm(t, f.srv.URL+"/oauth2/token", form, "tax-batch", secret); code != 200 {
			t.Fatalf("token %d: %d %v", i, code, body)
		}
	}
	if n := counted.reads.Load(); n != 1 {
		t.Fatalf("%d reads of the client for 3 tokens", n)
	}
	for i := 0; i < 2; i++ {
		if code, _ := postForm(t, f.srv.URL+"/oauth2/token", form, "nosuch", "x"); code != 401 {
			t.Fatalf("unknown client: %d", code)
		}
	}
	if n := counted.reads.Load(); n != 3 {
		t.Fatalf("an unknown client was kept: %d reads", n)
	}

	if err := f.db.DeleteClient(context.Background(), "tax-batch"); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(clientCacheTTL)
	if code, body := postForm(t, f.srv.URL+"/oauth2/token", form, "tax-batch", secret); code != 401 || body["error"] != "invalid_client" {
		t.Fatalf("a client deleted a TTL ago: %d %v", code, body)
	}
}
