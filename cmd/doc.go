// Package cmd holds the unibus programs: unibusd (the server), unibus (the
// command line) and worker (an example bot). Each command is a struct with
// Run(ctx, args) error that tests call directly; main only maps errors to
// exit codes.
package cmd
