package client

import "errors"

// ErrConnect wraps every failure to reach the bus.
var ErrConnect = errors.New("connect to unibus")
