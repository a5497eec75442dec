package testenv

import (
	"encoding/binary"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// NTPServer is an NTPv4 server (RFC 5905, server mode) on a loopback UDP port whose clock is the
// system clock moved by Shift. It stands in for a time source that disagrees with this machine,
// a failure a test cannot cause with a real server without changing the system clock.
type NTPServer struct {
	Addr  string
	shift atomic.Int64 // nanoseconds
}

// SetShift moves the server's clock away from the system clock.
func (s *NTPServer) SetShift(d time.Duration) { s.shift.Store(int64(d)) }

// NTP starts an NTP server on 127.0.0.1 for the test's lifetime.
func NTP(t testing.TB, shift time.Duration) *NTPServer {
	t.Helper()
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &NTPServer{Addr: conn.LocalAddr().String()}
	s.SetShift(shift)
	t.Cleanup(func() { _ = conn.Close() }) // ends the goroutine below; nothing to do if it fails
	go func() {
		buf := make([]byte, 512)
		for {
			n, from, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			if n < 48 || buf[0]&0x7 != 3 { // client mode only
				continue
			}
			now := time.Now().Add(time.Duration(s.shift.Load()))
			var r [48]byte
			r[0] = 0<<6 | 4<<3 | 4 // no leap warning, version 4, server mode
			r[1] = 2               // stratum: synchronised to a primary source
			r[2] = 6               // poll
			r[3] = 0xec            // precision 2^-20 s
			copy(r[12:16], []byte{127, 0, 0, 1})
			putNTPTime(r[16:24], now.Add(-16*time.Second)) // reference: last set 16 s ago
			copy(r[24:32], buf[40:48])                     // origin: the client's transmit time
			putNTPTime(r[32:40], now)
			putNTPTime(r[40:48], now)
			_, _ = conn.WriteTo(r[:], from) // a lost reply is a lost UDP packet, which the client must bear
		}
	}()
	return s
}

// putNTPTime writes t as an NTP timestamp: seconds since 1900 and a 32-bit fraction.
func putNTPTime(b []byte, t time.Time) {
	const era = 2208988800 // seconds from 1900 to 1970
	secs := uint64(t.Unix() + era)
	frac := uint64(t.Nanosecond()) << 32 / 1e9
	binary.BigEndian.PutUint64(b, secs<<32|frac)
}
