// Package testenv starts real components for tests: SoftHSM2 tokens, a PostgreSQL server, Redis
// servers. Each lives in a temporary directory on loopback. With CI=true a missing component
// fails the test instead of skipping it; test/deps.sh installs them.
package testenv
