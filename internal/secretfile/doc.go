// Package secretfile writes and reads small secret files (identity seeds,
// encryption keys): written with mode 0600, atomically, never over an
// existing file; refused on reading when group or others may access them.
package secretfile
