package natsnode

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// OperatorUser is the NATS user of the operator credentials.
const OperatorUser = "operator"

// selfUser is natter's own in-process login.
const selfUser = "natter"

// OperatorFile is where, under a data directory, the operator's password
// is kept (one line, mode 0600). The nats CLI reads it with
// `nats --user operator --password "$(cat natter-data/keys/nats-operator.password)"`.
const OperatorFile = "keys/nats-operator.password"

// Credentials are a NATS user and password.
type Credentials struct {
	User     string
	Password string
}

// newCredentials makes user a random password: 32 bytes from crypto/rand,
// URL-safe so that it also fits in nats://user:password@host URLs.
func newCredentials(user string) (Credentials, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return Credentials{}, fmt.Errorf("generate nats password: %w", err)
	}
	return Credentials{User: user, Password: base64.RawURLEncoding.EncodeToString(b)}, nil
}

// LoadOrCreateOperator returns the operator credentials kept in dataDir,
// generating them (mode 0600) on the first start.
func LoadOrCreateOperator(dataDir string) (Credentials, error) {
	path := filepath.Join(dataDir, OperatorFile)
	c, err := ReadOperator(dataDir)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return c, err
	}
	if c, err = newCredentials(OperatorUser); err != nil {
		return c, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return c, fmt.Errorf("create %s: %w", filepath.Dir(path), err)
	}
	// Written aside and renamed, so that a crash never leaves a half
	// password that the next start would take.
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return c, fmt.Errorf("write nats operator password: %w", err)
	}
	_, err = f.WriteString(c.Password + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return c, fmt.Errorf("write nats operator password %s: %w", path, err)
	}
	return c, nil
}

// ReadOperator reads the operator credentials from dataDir.
func ReadOperator(dataDir string) (Credentials, error) {
	path := filepath.Join(dataDir, OperatorFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return Credentials{}, fmt.Errorf("read nats operator password: %w", err)
	}
	pw := strings.TrimSpace(string(b))
	if pw == "" {
		return Credentials{}, fmt.Errorf("nats operator password %s is empty", path)
	}
	return Credentials{User: OperatorUser, Password: pw}, nil
}
