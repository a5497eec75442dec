package tsa

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/beevik/ntp"
	"golang.org/x/sys/unix"
)

// ClockConfig says when the system clock is to be trusted.
type ClockConfig struct {
	// RequireSync refuses time when the kernel is not synchronised. Only development turns it
	// off, on machines with no time service.
	RequireSync bool
	// MaxError bounds the kernel's maximum error estimate; default one second.
	MaxError time.Duration
	// NTP servers (host or host:port) to compare the clock with; none: no comparison.
	NTP []string
	// MaxOffset is how far the clock may be from every NTP server that answers; default 500 ms.
	MaxOffset time.Duration
	// Interval between comparisons; default one minute.
	Interval time.Duration
	// Timeout of one NTP query; default two seconds.
	Timeout time.Duration
}

// SystemClock is the system clock, trusted only while the kernel says it is synchronised
// (adjtimex: not TIME_ERROR, STA_UNSYNC clear, estimated error within MaxError) and, when NTP
// servers are configured, while at least one answers and none that answers differs from it by
// more than MaxOffset. The NTP comparison runs in Run, off the request path; until its first
// round the clock is not trusted.
type SystemClock struct {
	cfg ClockConfig
	log *slog.Logger
	ntp atomic.Pointer[error] // the last comparison's verdict; nil pointer: none yet
}

var _ Clock = (*SystemClock)(nil)

// NewSystemClock makes the clock; call Run when cfg names NTP servers.
func NewSystemClock(cfg ClockConfig, log *slog.Logger) *SystemClock {
	if cfg.MaxError <= 0 {
		cfg.MaxError = time.Second
	}
	if cfg.MaxOffset <= 0 {
		cfg.MaxOffset = 500 * time.Millisecond
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Minute
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	return &SystemClock{cfg: cfg, log: log}
}

// Now is the system time.
func (*SystemClock) Now() time.Time { return time.Now() }

// Synced asks the kernel, then reads the last NTP comparison.
func (c *SystemClock) Synced(context.Context) error {
	if c.cfg.RequireSync {
		if err := kernelSynced(c.cfg.MaxError); err != nil {
			return err
		}
	}
	if len(c.cfg.NTP) == 0 {
		return nil
	}
	verdict := c.ntp.Load()
	if verdict == nil {
		return errors.New("the clock has not been compared with NTP yet")
	}
	return *verdict
}

// Ping makes the clock a readiness check: a TSA with an untrusted clock is not ready.
func (c *SystemClock) Ping(ctx context.Context) error { return c.Synced(ctx) }

// Run compares the clock with the NTP servers now and every Interval until ctx ends.
func (c *SystemClock) Run(ctx context.Context) {
	if len(c.cfg.NTP) == 0 {
		return
	}
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	for {
		err := c.Compare()
		if prev := c.ntp.Swap(&err); (prev == nil || *prev == nil) != (err == nil) {
			if err != nil {
				c.log.Error("clock not trusted: timestamps refused", "err", err)
			} else {
				c.log.Info("clock agrees with NTP")
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Compare queries every NTP server once: nil when at least one answered and every answer is
// within MaxOffset of the system clock.
func (c *SystemClock) Compare() error {
	answered := 0
	var failures []string
	for _, srv := range c.cfg.NTP {
		resp, err := ntp.QueryWithOptions(srv, ntp.QueryOptions{Timeout: c.cfg.Timeout})
		if err == nil {
			err = resp.Validate()
		}
		if err != nil {
			failures = append(failures, fmt.Sprintf("%s: %v", srv, err))
			continue
		}
		answered++
		if off := resp.ClockOffset; off.Abs() > c.cfg.MaxOffset {
			return fmt.Errorf("the clock differs from NTP server %s by %v (at most %v allowed)", srv, off, c.cfg.MaxOffset)
		}
	}
	if answered == 0 {
		return fmt.Errorf("no NTP server answered (%s)", strings.Join(failures, "; "))
	}
	return nil
}

func kernelSynced(maxErr time.Duration) error {
	var tx unix.Timex
	state, err := unix.Adjtimex(&tx)
	if err != nil {
		return fmt.Errorf("adjtimex: %w", err)
	}
	if state == unix.TIME_ERROR || tx.Status&unix.STA_UNSYNC != 0 {
		return errors.New("the kernel clock is not synchronised (adjtimex: TIME_ERROR / STA_UNSYNC)")
	}
	if est := time.Duration(tx.Maxerror) * time.Microsecond; est > maxErr {
		return fmt.Errorf("the kernel clock's maximum error %v exceeds %v", est, maxErr)
	}
	return nil
}
