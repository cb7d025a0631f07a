package e2e_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// The binaries under test, built by TestMain.
var (
	unibusdBin string
	unibusBin  string
	workerBin  string
)

// TestMain builds the three commands once, with the go command of the
// toolchain that runs the tests, then runs the tests.
func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "unibus-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: make binary directory:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := build(dir); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	return m.Run()
}

// build builds unibusd, unibus and worker into dir and sets the paths of
// the binaries.
func build(dir string) error {
	// The test binary runs where it was built, under go test, so the root
	// of its build is the toolchain running the tests.
	//lint:ignore SA1019 see above: the same go as the one running the tests
	goCmd := filepath.Join(runtime.GOROOT(), "bin", "go")
	cmd := exec.Command(goCmd, "build", "-o", dir+string(filepath.Separator),
		"github.com/unibus/unibus/cmd/unibusd",
		"github.com/unibus/unibus/cmd/unibus",
		"github.com/unibus/unibus/cmd/worker")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build the commands with %s: %w\n%s", goCmd, err, out)
	}
	exe := ""
	if runtime.GOOS == "windows" {
		exe = ".exe"
	}
	unibusdBin = filepath.Join(dir, "unibusd"+exe)
	unibusBin = filepath.Join(dir, "unibus"+exe)
	workerBin = filepath.Join(dir, "worker"+exe)
	for _, b := range []string{unibusdBin, unibusBin, workerBin} {
		if _, err := os.Stat(b); err != nil {
			return fmt.Errorf("build the commands: %w", err)
		}
	}
	return nil
}
