// Package testio holds small helpers for tests that capture what commands
// write: a buffer safe for concurrent writers and a bounded wait for text
// to appear in it.
package testio
