package redis

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/logging"
)

// SetLogger routes go-redis's own log lines (a pool that cannot dial, a
// connection hook that failed, ...), which it otherwise prints as plain
// text to stderr, through l: each line becomes one record at level WARN
// with "component":"redis", so a broker logging JSON logs only JSON.
// go-redis has one logger per process, so the last call wins; Open calls
// it when Options.Logger is set. SetLogger(nil) restores go-redis's
// default stderr logger.
func SetLogger(l *slog.Logger) {
	if l == nil {
		logging.Enable()
		return
	}
	goredis.SetLogger(slogAdapter{l.With("component", "redis")})
}

// slogAdapter implements go-redis's internal.Logging on a slog.Logger.
type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Printf(ctx context.Context, format string, v ...any) {
	if ctx == nil {
		ctx = context.Background()
	}
	msg := strings.TrimPrefix(fmt.Sprintf(format, v...), "redis: ")
	a.l.Log(ctx, slog.LevelWarn, msg)
}
