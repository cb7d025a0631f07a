package main

import (
	"fmt"

	"github.com/unibus/unibus/internal/exitcode"
)

// usageError is bad command-line input: an unknown command or flag, a
// missing argument, a malformed value. It matches exitcode.ErrUsage.
type usageError struct {
	// cmd is the command path, "unibus rooms invite", for the pointer to
	// its --help; empty when unknown.
	cmd string
	err error
}

func (e *usageError) Error() string        { return e.err.Error() }
func (e *usageError) Unwrap() error        { return e.err }
func (e *usageError) Is(target error) bool { return target == exitcode.ErrUsage }

// usagef returns a usage error with a formatted message.
func usagef(format string, args ...any) error {
	return &usageError{err: fmt.Errorf(format, args...)}
}

// identityError is a failure to read the identity seed file.
type identityError struct {
	path string
	err  error
}

func (e *identityError) Error() string { return e.err.Error() }
func (e *identityError) Unwrap() error { return e.err }

// notAdmittedError is the bus refusing the connection of an identity: it
// is not registered, or revoked.
type notAdmittedError struct {
	pub string
	err error
}

func (e *notAdmittedError) Error() string { return e.err.Error() }
func (e *notAdmittedError) Unwrap() error { return e.err }
