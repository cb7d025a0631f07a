package main

import (
	"encoding/json"
	"io"
	"strings"
	"unicode"
)

// clean makes text from the bus safe to print on a terminal: control
// characters (escape sequences could rewrite the screen or the title) and
// bidirectional overrides (which could disguise text) become U+FFFD, except
// newlines and tabs; invalid UTF-8 too.
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\n' || r == '\t':
			return r
		case unicode.IsControl(r), unicode.Is(unicode.Bidi_Control, r):
			return unicode.ReplacementChar
		}
		return r
	}, strings.ToValidUTF8(s, "\uFFFD"))
}

// cleanLine is clean for one line: newlines become " ⏎ ".
func cleanLine(s string) string {
	return strings.ReplaceAll(clean(s), "\n", " ⏎ ")
}

// short abbreviates a key or ID for human output.
func short(s string) string {
	const n = 10
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// writeJSON writes v as indented JSON and a newline.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
