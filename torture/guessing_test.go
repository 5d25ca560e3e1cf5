//go:build torture

package torture

import (
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/natter-chat/natter/internal/testnode"
)

// testDistributedGuessing: 40 client addresses (127.0.0.10 and up) guess
// one account's password at once, each under its per-address login limit.
// The account's ceiling caps the guesses that reach a password check, each
// address is slowed after its 5 free failures, and the owner still logs in
// from the address they used before.
func testDistributedGuessing(t *testing.T, f *figures) {
	ctx := secCtx(t)
	node := testnode.Start(t, testnode.Options{RateLimit: true})
	rest := node.Client() // the owner's usual address, 127.0.0.1
	defer rest.Close()
	victim, _ := mustUser(ctx, t, rest, "victim", 1)

	const addrs, guesses = 40, 12
	var checked, refused, noRetry atomic.Int64
	perAddr := make([]int, addrs)
	var wg sync.WaitGroup
	for a := range addrs {
		wg.Go(func() {
			c := testnode.NewClient(node.URL(), testnode.ClientOptions{SourceIP: fmt.Sprintf("127.0.0.%d", 10+a)})
			defer c.Close()
			for i := range guesses {
				r, err := c.Do(ctx, "POST", "/v1/auth/login", "", map[string]string{"username": victim.Name, "password": fmt.Sprintf("guess-%d-%d", a, i)})
				if err != nil {
					t.Errorf("guess from address %d: %v", a, err)
					return
				}
				switch r.Status {
				case http.StatusUnauthorized:
					checked.Add(1)
					perAddr[a]++
				case http.StatusTooManyRequests:
					refused.Add(1)
					if n, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || n < 1 {
						noRetry.Add(1)
					}
				default:
					t.Errorf("guess from address %d: %s", a, r)
				}
			}
		})
	}
	wg.Wait()
	worst := 0
	for _, n := range perAddr {
		worst = max(worst, n)
	}
	owner, ownerErr := rest.Login(ctx, victim, "owner during the guessing")
	fresh := testnode.NewClient(node.URL(), testnode.ClientOptions{SourceIP: "127.0.0.200"})
	defer fresh.Close()
	r, err := fresh.Do(ctx, "POST", "/v1/auth/login", "", map[string]string{"username": victim.Name, "password": victim.Password})
	if err != nil {
		t.Fatal(err)
	}

	f.add("guessing_addresses", addrs)
	f.add("guessing_attempts", addrs*guesses)
	f.goal("guessing_password_checks", checked.Load(), "<= 101 (the account's ceiling)")
	f.add("guessing_429", refused.Load())
	f.goal("guessing_checks_worst_address", worst, "<= 7 (5 free, then 1 s, 2 s ...)")
	f.expect("guessing_429_without_retry_after", int(noRetry.Load()), 0)
	f.goal("guessing_owner_known_address_logs_in", ownerErr == nil && owner.Access != "", "true")
	f.add("guessing_fresh_address_status", r.Status)
	if ownerErr != nil {
		t.Errorf("the owner, from their usual address, during distributed guessing: %v", ownerErr)
	}
	if n := checked.Load(); n > 101 {
		t.Errorf("%d guesses reached a password check, want at most the ceiling (100, plus a refill)", n)
	}
	if worst > 7 {
		t.Errorf("one address got %d password checks in a burst of %d, want at most 7", worst, guesses)
	}
	if refused.Load() == 0 {
		t.Errorf("no guess was refused")
	}
	// With the ceiling used up, an address the account never logged in
	// from waits (the price of a botnet); it is told when to retry.
	if r.Status != http.StatusTooManyRequests || r.Header.Get("Retry-After") == "" {
		t.Errorf("fresh address with the ceiling used up: %s, want 429 with Retry-After", r)
	}
}
