package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// api is a client of natter's REST API, for what the bench needs of it.
type api struct {
	base *url.URL
	hc   *http.Client
	errs *ErrorCounts
}

func newAPI(base *url.URL, concurrency int, errs *ErrorCounts) *api {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = concurrency
	return &api{base: base, hc: &http.Client{Transport: tr, Timeout: 30 * time.Second}, errs: errs}
}

// account is a user with one logged-in device.
type account struct {
	Username string
	UserID   string
	DeviceID string
	Token    string
}

// apiError is a refused REST request.
type apiError struct {
	Status int
	Code   string
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s", e.Status, e.Code) }

// call POSTs in as JSON to path and decodes a want-status answer into out;
// any other status is an *apiError.
func (a *api) call(ctx context.Context, path string, in, out any, want int) error {
	body, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("encode request: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.base.JoinPath(path).String(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.hc.Do(req)
	if err != nil {
		a.errs.Note("http", err.Error())
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		e := &apiError{Status: resp.StatusCode, Code: responseCode(resp.StatusCode, resp.Body)}
		a.errs.Note(e.Code, "POST "+path)
		return e
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body) // let the connection be reused
	return nil
}

// newAccount registers username and logs it in once.
func (a *api) newAccount(ctx context.Context, username string) (account, error) {
	password := username + "-pw" // at least 8 characters; nothing to protect
	var reg struct {
		UserID string `json:"user_id"`
	}
	if err := a.call(ctx, "/v1/auth/register", map[string]string{"username": username, "password": password}, &reg, http.StatusCreated); err != nil {
		return account{}, fmt.Errorf("register %s: %w", username, err)
	}
	var login struct {
		UserID      string `json:"user_id"`
		DeviceID    string `json:"device_id"`
		AccessToken string `json:"access_token"`
	}
	in := map[string]string{"username": username, "password": password, "device_name": "natter-bench"}
	if err := a.call(ctx, "/v1/auth/login", in, &login, http.StatusOK); err != nil {
		return account{}, fmt.Errorf("log in %s: %w", username, err)
	}
	if login.AccessToken == "" || login.UserID == "" {
		return account{}, fmt.Errorf("log in %s: answer without user_id or access_token", username)
	}
	return account{Username: username, UserID: login.UserID, DeviceID: login.DeviceID, Token: login.AccessToken}, nil
}

// newAccounts makes n accounts named after runID, concurrency at a time,
// with a progress line on e's stderr.
func (e *env) newAccounts(ctx context.Context, n int) ([]account, error) {
	accts := make([]account, n)
	var done atomic.Int64
	stop := e.progress(ctx, func(elapsed time.Duration) string {
		d := done.Load()
		return fmt.Sprintf("accounts %d/%d (%.0f/s)", d, n, float64(d)/elapsed.Seconds())
	})
	defer stop()
	err := forEach(ctx, n, e.cfg.Concurrency, func(ctx context.Context, i int) error {
		a, err := e.api.newAccount(ctx, "bench_"+e.runID+"_"+strconv.FormatInt(int64(i), 36))
		if err != nil {
			return err
		}
		accts[i] = a
		done.Add(1)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("create %d accounts: %w", n, err)
	}
	return accts, nil
}

// newRunID returns 8 random hex digits: unique usernames and
// client_message_ids for each run against a long-lived server.
func newRunID() string {
	var b [4]byte
	_, _ = rand.Read(b[:]) // never fails
	return hex.EncodeToString(b[:])
}

// forEach runs fn(ctx, i) for i in [0, n), at most workers at a time. The
// first error cancels the calls not yet finished and is returned; forEach
// returns once every call it started has.
func forEach(ctx context.Context, n, workers int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(max(workers, 1), n) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(ctx, i); err != nil {
					cancel(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && ctx.Err() != nil {
		return err
	}
	return nil
}

// connectAll opens one connection per account, concurrency at a time, and
// waits for each to be synced. handler makes each connection's frame
// handler. On error it closes what it opened.
func (e *env) connectAll(ctx context.Context, accts []account, handler func(account) func(*inbound, time.Time)) ([]*Conn, error) {
	conns := make([]*Conn, len(accts))
	var done atomic.Int64
	stop := e.progress(ctx, func(time.Duration) string {
		return fmt.Sprintf("connections %d/%d", done.Load(), len(accts))
	})
	err := forEach(ctx, len(accts), e.cfg.Concurrency, func(ctx context.Context, i int) error {
		c, err := e.dial.DialAt(ctx, i, accts[i].Token, "", handler(accts[i]))
		if err != nil {
			return fmt.Errorf("connect %s: %w", accts[i].Username, err)
		}
		conns[i] = c
		if _, _, err := c.WaitSynced(ctx); err != nil {
			return fmt.Errorf("connect %s: %w", accts[i].Username, err)
		}
		done.Add(1)
		return nil
	})
	stop()
	if err != nil {
		closeAll(conns)
		return nil, fmt.Errorf("open %d connections: %w", len(accts), err)
	}
	return conns, nil
}

// closeAll closes every non-nil connection, many at a time: each Close
// waits for the server's close frame.
func closeAll(conns []*Conn) {
	_ = forEach(context.Background(), len(conns), 256, func(_ context.Context, i int) error {
		if conns[i] != nil {
			conns[i].Close()
		}
		return nil
	})
}
