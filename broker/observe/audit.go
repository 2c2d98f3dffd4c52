package observe

import "log/slog"

// Audit writes the audit log: one JSON line per sign-in, rejection, token
// grant and admin action. The zero value discards.
type Audit struct{ log *slog.Logger }

// NewAudit writes audit lines to log (nil discards).
func NewAudit(log *slog.Logger) Audit { return Audit{log: log} }

// Event writes one audit line. Callers pass identifiers only, never a
// secret, code, token or password.
func (a Audit) Event(event string, kv ...any) {
	if a.log == nil {
		return
	}
	a.log.Info(event, append([]any{"audit", true}, kv...)...)
}
