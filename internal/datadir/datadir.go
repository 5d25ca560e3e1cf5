// Package datadir guards natter's data directory: one process at a time
// (an exclusive flock), and nobody else's eyes (0700, files 0600).
package datadir

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// LockFile is the lock's name under the data directory; it holds the
// holder's pid, for the message the next process prints.
const LockFile = "natter.lock"

// ErrLocked is returned by Open when another process holds the directory.
var ErrLocked = errors.New("data directory in use")

// Dir is a data directory this process holds until Close.
type Dir struct {
	path string
	f    *os.File
	once sync.Once
}

// Open creates dir (0700) or makes an existing one private, then takes an
// exclusive lock on it. Two natter processes on one directory would hand
// out the same sequence numbers and lose acknowledged messages, so the
// lock is taken before anything else opens a file there; the second
// process gets ErrLocked, with the holder's pid when it is known.
func Open(dir string, log *slog.Logger) (*Dir, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory %s: %w", dir, err)
	}
	if err := private(dir, log); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			holder := "another process"
			if b, rerr := os.ReadFile(path); rerr == nil {
				if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil && pid > 0 {
					holder = fmt.Sprintf("another natter (pid %d)", pid)
				}
			}
			return nil, fmt.Errorf("%w: %s is held by %s; run one natter per --data directory", ErrLocked, dir, holder)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	d := &Dir{path: dir, f: f}
	if err := fixFiles(dir, log); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// Path is the directory.
func (d *Dir) Path() string { return d.path }

// Close releases the lock; safe to call twice. The lock file stays: removing
// it would let a third process lock a new file while a second still waits
// on the old one.
func (d *Dir) Close() {
	d.once.Do(func() { d.f.Close() })
}

// private makes dir 0700 when group or others may enter it, with a
// warning, and fails when that cannot be done.
func private(dir string, log *slog.Logger) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("data directory %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("data directory %s is not a directory", dir)
	}
	if fi.Mode().Perm()&0o077 == 0 {
		return nil
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("data directory %s is open to other users (%v) and cannot be made private: %w", dir, fi.Mode().Perm(), err)
	}
	log.Warn("data directory was open to other users; made it 0700", "dir", dir, "was", fi.Mode().Perm().String())
	return nil
}

// fixFiles takes group and other permissions off everything under dir
// (files that an older natter created with the umask), with one warning.
func fixFiles(dir string, log *slog.Logger) error {
	fixed := 0
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil || path == dir || e.Type()&fs.ModeSymlink != 0 {
			return err
		}
		fi, err := e.Info()
		if err != nil {
			return err
		}
		perm := fi.Mode().Perm()
		if perm&0o077 == 0 {
			return nil
		}
		if err := os.Chmod(path, perm&0o700); err != nil {
			return fmt.Errorf("make %s private: %w", path, err)
		}
		fixed++
		return nil
	})
	if err != nil {
		return fmt.Errorf("data directory %s: %w", dir, err)
	}
	if fixed > 0 {
		log.Warn("files in the data directory were open to other users; made them private", "dir", dir, "files", fixed)
	}
	return nil
}
