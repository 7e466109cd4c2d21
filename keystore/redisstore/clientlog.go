package redisstore

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/redis/go-redis/v9"
)

// clientLog sends go-redis' own messages (one per failed dial, while Redis is down) to slog at
// debug level: the store already logs an outage once, with its reason.
type clientLog struct{ logger *slog.Logger }

func (l clientLog) Printf(ctx context.Context, format string, v ...any) {
	l.logger.DebugContext(ctx, "redis client", "message", fmt.Sprintf(format, v...))
}

// RouteClientLogs sends the messages go-redis writes to its process-wide logger to logger. A
// program calls it once, before opening stores.
func RouteClientLogs(logger *slog.Logger) { redis.SetLogger(clientLog{logger}) }
