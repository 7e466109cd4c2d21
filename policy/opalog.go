package policy

import (
	"context"
	"fmt"
	"log/slog"
	"sort"

	"github.com/open-policy-agent/opa/v1/logging"
)

// opaLogger lets OPA's plugins (bundle downloads, decision logs, status) write through the
// server's slog logger, so their lines have the same format, level and destination as the
// rest of regoauth. Fields become attributes under their OPA names; secrets in messages and
// fields are withheld (see redact.go).
type opaLogger struct {
	logger *slog.Logger
	fields map[string]any
	level  logging.Level
}

func newOPALogger(l *slog.Logger) *opaLogger {
	return &opaLogger{logger: l, level: logging.Debug}
}

// log writes one line at level, if OPA's own level (at) lets it through and slog's does too.
func (l *opaLogger) log(at logging.Level, level slog.Level, format string, a []any) {
	ctx := context.Background()
	if l.level < at || !l.logger.Enabled(ctx, level) {
		return
	}
	msg := format
	if len(a) > 0 {
		msg = fmt.Sprintf(format, a...)
	}
	msg = redactText(msg)
	keys := make([]string, 0, len(l.fields))
	for k := range l.fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	attrs := make([]slog.Attr, 0, len(keys))
	for _, k := range keys {
		attrs = append(attrs, slog.Any(k, redactField(k, l.fields[k])))
	}
	l.logger.LogAttrs(ctx, level, msg, attrs...)
}

func (l *opaLogger) Debug(format string, a ...any) { l.log(logging.Debug, slog.LevelDebug, format, a) }
func (l *opaLogger) Info(format string, a ...any)  { l.log(logging.Info, slog.LevelInfo, format, a) }
func (l *opaLogger) Warn(format string, a ...any)  { l.log(logging.Warn, slog.LevelWarn, format, a) }
func (l *opaLogger) Error(format string, a ...any) { l.log(logging.Error, slog.LevelError, format, a) }

func (l *opaLogger) WithFields(fields map[string]any) logging.Logger {
	merged := make(map[string]any, len(l.fields)+len(fields))
	for k, v := range l.fields {
		merged[k] = v
	}
	for k, v := range fields {
		merged[k] = v
	}
	return &opaLogger{logger: l.logger, fields: merged, level: l.level}
}

func (l *opaLogger) GetLevel() logging.Level { return l.level }

func (l *opaLogger) SetLevel(level logging.Level) { l.level = level }
