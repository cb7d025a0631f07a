package authcallout

import "errors"

var (
	// ErrConfigValidation wraps every configuration error.
	ErrConfigValidation = errors.New("invalid auth callout configuration")
	// ErrDenied wraps every reason a connection is refused.
	ErrDenied = errors.New("denied")
)
