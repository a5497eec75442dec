package tsa

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// SystemClock is the system clock, trusted only while the kernel says it is synchronised
// (adjtimex: not TIME_ERROR, STA_UNSYNC clear) and its estimated error is within MaxError.
type SystemClock struct {
	// RequireSync refuses time when the kernel is not synchronised. Only development turns it
	// off, on machines with no time service.
	RequireSync bool
	// MaxError bounds the kernel's maximum error estimate; default one second.
	MaxError time.Duration
}

var _ Clock = SystemClock{}

// Now is the system time.
func (SystemClock) Now() time.Time { return time.Now() }

// Synced asks the kernel.
func (c SystemClock) Synced(context.Context) error {
	if !c.RequireSync {
		return nil
	}
	var tx unix.Timex
	state, err := unix.Adjtimex(&tx)
	if err != nil {
		return fmt.Errorf("adjtimex: %w", err)
	}
	if state == unix.TIME_ERROR || tx.Status&unix.STA_UNSYNC != 0 {
		return errors.New("the kernel clock is not synchronised (adjtimex: TIME_ERROR / STA_UNSYNC)")
	}
	maxErr := c.MaxError
	if maxErr <= 0 {
		maxErr = time.Second
	}
	if time.Duration(tx.Maxerror)*time.Microsecond > maxErr {
		return fmt.Errorf("the kernel clock's maximum error %v exceeds %v", time.Duration(tx.Maxerror)*time.Microsecond, maxErr)
	}
	return nil
}

// Ping makes the clock a readiness check: a TSA with an untrusted clock is not ready.
func (c SystemClock) Ping(ctx context.Context) error { return c.Synced(ctx) }
