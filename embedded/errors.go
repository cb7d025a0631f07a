package embedded

import "errors"

// ErrConfigValidation is wrapped by every error that Config.valid reports.
var ErrConfigValidation = errors.New("invalid embedded server configuration")

// ErrNotReady is returned when the server does not accept connections within
// Config.ReadyTimeout.
var ErrNotReady = errors.New("nats-server not ready")
