package testnode

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// BinaryEnv names a prebuilt natter binary to use instead of building one.
const BinaryEnv = "NATTER_TEST_BIN"

var build struct {
	once sync.Once
	dir  string // temporary directory of the built binary, removed by Main
	bin  string
	err  error
}

// Binary returns the natter binary, building ./cmd/natter of the module
// under test the first time (or taking $NATTER_TEST_BIN).
func Binary() (string, error) {
	build.once.Do(func() {
		if p := os.Getenv(BinaryEnv); p != "" {
			build.bin = p
			return
		}
		build.bin, build.dir, build.err = buildNatter()
	})
	return build.bin, build.err
}

func buildNatter() (bin, dir string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	gomod := strings.TrimSpace(string(out))
	if err != nil || gomod == "" || gomod == os.DevNull {
		return "", "", fmt.Errorf("find the module root (go env GOMOD = %q): %v", gomod, err)
	}
	dir, err = os.MkdirTemp("", "natter-testnode-")
	if err != nil {
		return "", "", err
	}
	bin = filepath.Join(dir, "natter")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/natter")
	cmd.Dir = filepath.Dir(gomod)
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return "", "", fmt.Errorf("go build ./cmd/natter: %v\n%s", err, out)
	}
	return bin, dir, nil
}

// Main runs a test binary's tests and removes the natter binary built for
// them: func TestMain(m *testing.M) { os.Exit(testnode.Main(m)) }. m is
// a *testing.M.
func Main(m interface{ Run() int }) int {
	defer func() {
		if build.dir != "" {
			os.RemoveAll(build.dir)
		}
	}()
	// Build before the tests, so a build failure is reported once and no
	// test's deadline pays for it.
	if _, err := Binary(); err != nil {
		fmt.Fprintln(os.Stderr, "testnode:", err)
		return 1
	}
	return m.Run()
}
