package embedded

import (
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
)

// slogAdapter forwards nats-server log lines to a slog.Logger, and keeps
// the first fatal one: nats-server logs a port it cannot listen on as fatal
// and goes on without it, so Start reads it back to fail at once rather
// than wait out its ready timeout.
type slogAdapter struct {
	logger *slog.Logger
	fatal  atomic.Pointer[string]
}

// fatalError is the first fatal line nats-server logged, or nil.
func (a *slogAdapter) fatalError() error {
	if msg := a.fatal.Load(); msg != nil {
		return errors.New(*msg)
	}
	return nil
}

func (a *slogAdapter) Noticef(format string, v ...any) {
	a.logger.Info(fmt.Sprintf(format, v...), "component", "nats-server")
}

func (a *slogAdapter) Warnf(format string, v ...any) {
	a.logger.Warn(fmt.Sprintf(format, v...), "component", "nats-server")
}

func (a *slogAdapter) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	a.fatal.CompareAndSwap(nil, &msg)
	a.logger.Error(msg, "component", "nats-server", "fatal", true)
}

func (a *slogAdapter) Errorf(format string, v ...any) {
	a.logger.Error(fmt.Sprintf(format, v...), "component", "nats-server")
}

func (a *slogAdapter) Debugf(format string, v ...any) {
	a.logger.Debug(fmt.Sprintf(format, v...), "component", "nats-server")
}

func (a *slogAdapter) Tracef(format string, v ...any) {
	a.logger.Debug(fmt.Sprintf(format, v...), "component", "nats-server", "trace", true)
}
