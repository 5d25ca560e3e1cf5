package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	nclient "github.com/natter-chat/natter/client"
)

// credentials is what natter login keeps: one device of one user on one
// server. The file is the user's alone (0600 in a 0700 directory): its
// refresh token is as good as the password for this device.
type credentials struct {
	Server   string `json:"server"`
	Username string `json:"username"`
	nclient.Session
}

// tailCursor is the last event a tail processed, for one device: a
// cursor is only meaningful to the user and server that issued it.
type tailCursor struct {
	Server   string `json:"server"`
	UserID   string `json:"user_id"`
	DeviceID string `json:"device_id"`
	Cursor   string `json:"cursor"`
}

// credentialStore is natter's directory in the user's config directory
// (os.UserConfigDir()/natter: $XDG_CONFIG_HOME/natter, ~/.config/natter,
// ~/Library/Application Support/natter). Writes are atomic (a new file
// renamed over the old), so a crash leaves the old tokens or the new,
// never half of either; a lock file serializes refreshes between natter
// processes sharing the login (tail in one terminal, send in another).
type credentialStore struct{ dir string }

func openCredentialStore() (*credentialStore, error) {
	base, err := os.UserConfigDir()
	if err != nil {
		return nil, fmt.Errorf("find the config directory: %w (set $XDG_CONFIG_HOME or $HOME)", err)
	}
	return &credentialStore{dir: filepath.Join(base, "natter")}, nil
}

func (s *credentialStore) path() string { return filepath.Join(s.dir, "credentials.json") }

func (s *credentialStore) cursorPath(name string) string {
	return filepath.Join(s.dir, "cursor-"+name+".json")
}

// load returns the stored login, nil when there is none.
func (s *credentialStore) load() (*credentials, error) {
	var c credentials
	if err := s.read(s.path(), &c); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	if c.AccessToken == "" {
		return nil, nil
	}
	return &c, nil
}

func (s *credentialStore) read(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("read %s: %w (delete it and log in again)", path, err)
	}
	return nil
}

// save replaces the stored login.
func (s *credentialStore) save(c credentials) error { return s.write(s.path(), c) }

// forget deletes the stored login and every tail cursor of it.
func (s *credentialStore) forget() error {
	err := os.Remove(s.path())
	if errors.Is(err, fs.ErrNotExist) {
		err = nil
	}
	cursors, _ := filepath.Glob(filepath.Join(s.dir, "cursor-*.json"))
	for _, p := range cursors {
		_ = os.Remove(p)
	}
	return err
}

// write stores v as JSON at path atomically, mode 0600.
func (s *credentialStore) write(path string, v any) error {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("make %s: %w", s.dir, err)
	}
	// MkdirAll keeps the mode of a directory that exists: it may have
	// been made by something else, with the umask's mode.
	if err := os.Chmod(s.dir, 0o700); err != nil {
		return fmt.Errorf("make %s private: %w", s.dir, err)
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(s.dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(f.Name()) // after a successful rename, a no-op
	// CreateTemp makes the file 0600; Chmod states it.
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// sharedRefresh is nclient.Options.Shared: it runs refresh under an
// exclusive lock on credentials.lock with the login as stored now, and
// stores the result before unlocking. Another natter process that
// refreshed meanwhile has stored its tokens, and refresh adopts them
// instead of presenting the used refresh token (which would revoke the
// device).
func (s *credentialStore) sharedRefresh(ctx context.Context, refresh func(nclient.Session) (nclient.Session, error)) error {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("make %s: %w", s.dir, err)
	}
	lock, err := os.OpenFile(filepath.Join(s.dir, "credentials.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("lock the credentials: %w", err)
	}
	defer lock.Close()
	// A refresh is one HTTP round trip: waiting for another process's
	// to end is short, and ctx bounds the HTTP call itself.
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("lock the credentials: %w", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	cur, err := s.load()
	if err != nil {
		return err
	}
	if cur == nil {
		return errNotLoggedIn
	}
	next, err := refresh(cur.Session)
	if err != nil {
		return err
	}
	if next == cur.Session {
		return nil
	}
	cur.Session = next
	return s.save(*cur)
}

// loadCursor returns the stored cursor of this device for a tail named
// name, "" when there is none or it belongs to another login.
func (s *credentialStore) loadCursor(name string, c *credentials) string {
	var tc tailCursor
	if err := s.read(s.cursorPath(name), &tc); err != nil {
		return ""
	}
	if tc.Server != c.Server || tc.UserID != c.UserID || tc.DeviceID != c.DeviceID {
		return ""
	}
	return tc.Cursor
}

func (s *credentialStore) saveCursor(name string, c *credentials, cursor string) error {
	return s.write(s.cursorPath(name), tailCursor{Server: c.Server, UserID: c.UserID, DeviceID: c.DeviceID, Cursor: cursor})
}
