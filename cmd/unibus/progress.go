package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/charmbracelet/x/term"
)

// progressBar draws `[=====>    ] 42% 2.1/5.0 MiB` on a terminal, redrawn
// in place with \r. The zero of *progressBar (nil) draws nothing, so
// callers pass its update method unconditionally.
type progressBar struct {
	w    io.Writer
	last string // the line drawn last
}

// progressWidth is the number of cells between the brackets.
const progressWidth = 30

// progressBar returns a bar on a.Stderr, or nil when quiet or when
// standard error is not a terminal (a pipe, a file, a test's buffer).
func (a *app) progressBar(quiet bool) *progressBar {
	if quiet || !isTerminal(a.Stderr) {
		return nil
	}
	return &progressBar{w: a.Stderr}
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(f.Fd())
}

// update redraws the bar when its text changed; it has the signature of
// the client's progress callbacks.
func (p *progressBar) update(done, total int64) {
	if p == nil {
		return
	}
	line := progressLine(done, total)
	if line == p.last {
		return
	}
	p.last = line
	fmt.Fprintf(p.w, "\r%s", line)
}

// finish ends the bar's line, if one was drawn.
func (p *progressBar) finish() {
	if p == nil || p.last == "" {
		return
	}
	fmt.Fprintln(p.w)
}

// progressLine formats the bar for done of total bytes.
func progressLine(done, total int64) string {
	frac := 1.0
	if total > 0 {
		frac = min(max(float64(done)/float64(total), 0), 1)
	}
	filled := int(frac * progressWidth)
	var bar string
	switch {
	case filled >= progressWidth:
		bar = strings.Repeat("=", progressWidth)
	default:
		bar = strings.Repeat("=", filled) + ">" + strings.Repeat(" ", progressWidth-filled-1)
	}
	return fmt.Sprintf("[%s] %3d%% %s", bar, int(frac*100), sizes(done, total))
}

// sizes formats "2.1/5.0 MiB" in the unit of total.
func sizes(done, total int64) string {
	units := []string{"B", "KiB", "MiB", "GiB"}
	div, i := 1.0, 0
	for i < len(units)-1 && float64(total) >= div*1024 {
		div *= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%d/%d B", done, total)
	}
	return fmt.Sprintf("%.1f/%.1f %s", float64(done)/div, float64(total)/div, units[i])
}
