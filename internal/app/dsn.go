package app

import "net/url"

// RedactDSN hides a password in a database or Redis URL before it is logged.
func RedactDSN(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.User == nil {
		return dsn
	}
	return u.Redacted()
}
