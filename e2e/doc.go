// Package e2e holds end-to-end tests that build the real fedbroker binary,
// run several replicas of it on loopback ports against real redis-server
// processes, and check that any replica serves any step of any flow and
// that faults (Redis stopped, restarted empty or slow, a replica killed, an
// upstream IdP down or slow) are answered with errors, never with tokens
// minted from state that was not persisted.
//
// The package has no API: it is tests only. Tests that need Redis start
// their own redis-server (broker/storage/redis/redistest) and fail under
// CI=true when it is missing.
package e2e
