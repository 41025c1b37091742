package redis

import (
	"context"
	"fmt"
	"log/slog"

	goredis "github.com/redis/go-redis/v9"
)

// SetLogger sends go-redis' own messages (failed dials, pool events) to l at
// debug level instead of its default, stderr: dovetail reports unavailability
// through the callers' errors already. go-redis keeps this logger process-wide,
// so the command wiring calls it once at startup.
func SetLogger(l *slog.Logger) { goredis.SetLogger(slogAdapter{l}) }

type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Printf(ctx context.Context, format string, v ...any) {
	a.l.DebugContext(ctx, "go-redis: "+fmt.Sprintf(format, v...), "component", "store/redis")
}
