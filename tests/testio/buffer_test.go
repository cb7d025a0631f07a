package testio_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/unibus/unibus/tests/testio"
)

func TestBufferConcurrentWriters(t *testing.T) {
	var b testio.Buffer
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 100 {
				fmt.Fprintf(&b, "w%d-%d\n", i, j)
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	b.WaitFor(t, "w7-99\n", 5*time.Second)
	<-done
	if got := strings.Count(b.String(), "\n"); got != 800 {
		t.Fatalf("%d lines, want 800", got)
	}
	if b.Len() != len(b.String()) {
		t.Fatal("Len disagrees with String")
	}
	b.Reset()
	if b.Len() != 0 {
		t.Fatal("Reset kept content")
	}
}
