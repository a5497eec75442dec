package tsa

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/vula-eid/vula/internal/testenv"
)

// The clock is compared with NTP servers: trusted while one answers and all that answer agree
// within MaxOffset, not trusted before the first comparison, when they disagree, or when none
// answers.
func TestClockComparedWithNTP(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx := context.Background()
	good := testenv.NTP(t, 0)
	c := NewSystemClock(ClockConfig{NTP: []string{good.Addr}, MaxOffset: 200 * time.Millisecond, Timeout: time.Second}, quiet)
	if err := c.Synced(ctx); err == nil || !strings.Contains(err.Error(), "not been compared") {
		t.Fatalf("before the first comparison: %v", err)
	}
	if err := c.Compare(); err != nil {
		t.Fatalf("agreeing server: %v", err)
	}
	good.SetShift(3 * time.Second)
	if err := c.Compare(); err == nil || !strings.Contains(err.Error(), "differs from NTP server "+good.Addr) {
		t.Fatalf("server 3 s ahead: %v", err)
	}
	good.SetShift(-3 * time.Second)
	if err := c.Compare(); err == nil {
		t.Fatal("server 3 s behind was taken")
	}
	// A server that does not answer is skipped while another does; alone, it is a failure.
	silent := "127.0.0.1:9" // discard: nobody answers
	good.SetShift(0)
	c = NewSystemClock(ClockConfig{NTP: []string{silent, good.Addr}, Timeout: 300 * time.Millisecond}, quiet)
	if err := c.Compare(); err != nil {
		t.Fatalf("one silent, one agreeing: %v", err)
	}
	c = NewSystemClock(ClockConfig{NTP: []string{silent}, Timeout: 300 * time.Millisecond}, quiet)
	if err := c.Compare(); err == nil || !strings.Contains(err.Error(), "no NTP server answered") {
		t.Fatalf("only a silent server: %v", err)
	}

	// Run keeps the verdict that Synced (and so the TSA and /readyz) reads.
	good.SetShift(0)
	c = NewSystemClock(ClockConfig{NTP: []string{good.Addr}, Interval: 50 * time.Millisecond, Timeout: time.Second}, quiet)
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	go c.Run(runCtx)
	waitFor(t, func() bool { return c.Synced(ctx) == nil })
	good.SetShift(5 * time.Second)
	waitFor(t, func() bool { return c.Ping(ctx) != nil })
	good.SetShift(0)
	waitFor(t, func() bool { return c.Synced(ctx) == nil })
}

// Without NTP servers and without RequireSync the clock is trusted as it is (development).
func TestClockDevelopment(t *testing.T) {
	c := NewSystemClock(ClockConfig{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := c.Synced(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 10 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
