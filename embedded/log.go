package embedded

import (
	"fmt"
	"log/slog"
)

// slogAdapter forwards nats-server log lines to a slog.Logger.
type slogAdapter struct{ logger *slog.Logger }

func (a *slogAdapter) Noticef(format string, v ...any) {
	a.logger.Info(fmt.Sprintf(format, v...), "component", "nats-server")
}

func (a *slogAdapter) Warnf(format string, v ...any) {
	a.logger.Warn(fmt.Sprintf(format, v...), "component", "nats-server")
}

func (a *slogAdapter) Fatalf(format string, v ...any) {
	a.logger.Error(fmt.Sprintf(format, v...), "component", "nats-server", "fatal", true)
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
