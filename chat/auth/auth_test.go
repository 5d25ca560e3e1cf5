package auth

import (
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/argon2"
)

var testKey = []byte("natter-test-key-0123456789abcdef")

func TestHashAndCheckPassword(t *testing.T) {
	h, err := HashPassword("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, fmt.Sprintf("$argon2id$v=%d$m=19456,t=2,p=1$", argon2.Version)) {
		t.Errorf("unexpected hash format %q", h)
	}
	ok, err := CheckPassword(h, "correct horse")
	if err != nil || !ok {
		t.Fatalf("right password: %v %v", ok, err)
	}
	for _, wrong := range []string{"correct horsE", "correct horse ", "", "correct"} {
		if ok, err := CheckPassword(h, wrong); err != nil || ok {
			t.Errorf("wrong password %q: %v %v", wrong, ok, err)
		}
	}
	h2, _ := HashPassword("correct horse")
	if h2 == h {
		t.Error("two hashes of one password are equal: salt not random")
	}
	if ok, _ := CheckPassword(h2, "correct horse"); !ok {
		t.Error("second hash does not check")
	}
}

func TestCheckPasswordUsesStoredParameters(t *testing.T) {
	salt := []byte("0123456789abcdef")
	key := argon2.IDKey([]byte("pw"), salt, 1, 64, 2, 16)
	h := fmt.Sprintf("$argon2id$v=19$m=64,t=1,p=2$%s$%s", b64.EncodeToString(salt), b64.EncodeToString(key))
	if ok, err := CheckPassword(h, "pw"); err != nil || !ok {
		t.Fatalf("custom parameters: %v %v", ok, err)
	}
	if ok, _ := CheckPassword(h, "pW"); ok {
		t.Fatal("wrong password accepted")
	}
}

// TestCheckPasswordMalformedHashes: CheckPassword must return an error,
// never panic and never say true, whatever the stored hash looks like.
func TestCheckPasswordMalformedHashes(t *testing.T) {
	salt := b64.EncodeToString([]byte("0123456789abcdef"))
	key := b64.EncodeToString(make([]byte, 32))
	for _, h := range []string{
		"", "$", "$$$$$", "plaintext", "$argon2i$v=19$m=64,t=1,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=64,t=1,p=1$" + salt, // 5 parts
		"$argon2id$v=19$m=64,t=1,p=1$" + salt + "$" + key + "$",
		"$argon2id$v=19$m=x,t=1,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=64,t=1,p=256$" + salt + "$" + key,
		"$argon2id$v=19$m=-1,t=1,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=64,t=1,p=1$!!!$" + key,
		"$argon2id$v=19$m=64,t=1,p=1$" + salt + "$***",
		"$argon2id$v=19$m=64,t=1,p=1$" + salt + "====$" + key,
		// Parameters argon2 refuses by panicking, and an empty key.
		"$argon2id$v=19$m=64,t=0,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=64,t=1,p=0$" + salt + "$" + key,
		"$argon2id$v=19$m=0,t=0,p=0$$",
		"$argon2id$v=19$m=64,t=1,p=1$" + salt + "$",
		"$argon2id$v=19$m=64,t=1,p=1$$",
	} {
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("CheckPassword(%q) panics: %v", h, r)
				}
			}()
			ok, err := CheckPassword(h, "password")
			if ok {
				t.Errorf("CheckPassword(%q) = true", h)
			}
			if err == nil {
				t.Errorf("CheckPassword(%q): want an error for a malformed hash", h)
			}
		}()
	}
}

func TestRefreshToken(t *testing.T) {
	tok, hash, err := NewRefreshToken()
	if err != nil {
		t.Fatal(err)
	}
	if hash != HashRefreshToken(tok) || hash == tok || len(hash) != 64 {
		t.Fatalf("token %q hash %q", tok, hash)
	}
	if b, err := base64.RawURLEncoding.DecodeString(tok); err != nil || len(b) != 32 {
		t.Fatalf("token is not 32 random bytes: %v", err)
	}
	tok2, _, _ := NewRefreshToken()
	if tok2 == tok {
		t.Fatal("refresh tokens repeat")
	}
}

func TestIssueVerify(t *testing.T) {
	s := NewSigner(testKey, time.Hour)
	if s.TTL() != time.Hour {
		t.Fatal("TTL")
	}
	now := time.Now()
	tok, err := s.Issue("u1", "d1", now)
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if c.UserID != "u1" || c.DeviceID != "d1" || c.Expires.Unix() != now.Add(time.Hour).Unix() {
		t.Fatalf("claims %+v", c)
	}
	// Another signer with the same key verifies it; one with another key does not.
	if _, err := NewSigner(append([]byte(nil), testKey...), time.Minute).Verify(tok); err != nil {
		t.Fatalf("same key: %v", err)
	}
	if _, err := NewSigner([]byte("another-key-0123456789abcdef0123"), time.Hour).Verify(tok); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("other key: %v", err)
	}
}

func TestVerifyExpired(t *testing.T) {
	s := NewSigner(testKey, time.Second)
	tok, err := s.Issue("u1", "d1", time.Now().Add(-2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Verify(tok); !errors.Is(err, ErrExpiredToken) {
		t.Fatalf("want ErrExpiredToken, got %v", err)
	}
	if errors.Is(ErrExpiredToken, ErrInvalidToken) {
		t.Fatal("expired must be distinguishable from invalid")
	}
}

func TestVerifyExpiredButTamperedIsInvalid(t *testing.T) {
	// An expired token with a bad signature must not report "expired"
	// (which would tell the client to refresh) but "invalid".
	s := NewSigner(testKey, time.Second)
	other := NewSigner([]byte("another-key-0123456789abcdef0123"), time.Second)
	tok, _ := other.Issue("u1", "d1", time.Now().Add(-2*time.Hour))
	if _, err := s.Verify(tok); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("want ErrInvalidToken, got %v", err)
	}
}

func signed(t testing.TB, m jwt.SigningMethod, key any, claims jwt.Claims) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(m, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func goodClaims() jwtClaims {
	now := time.Now()
	return jwtClaims{DeviceID: "d1", RegisteredClaims: jwt.RegisteredClaims{
		Issuer: "natter", Subject: "u1", IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)),
	}}
}

// forgedTokens are tokens Verify must refuse, keyed by what is wrong.
func forgedTokens(t testing.TB, good string) map[string]string {
	seg := strings.Split(good, ".")
	enc := base64.RawURLEncoding.EncodeToString
	noneHeader := enc([]byte(`{"alg":"none","typ":"JWT"}`))
	noneTok, err := jwt.NewWithClaims(jwt.SigningMethodNone, goodClaims()).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	c := goodClaims()
	c.Issuer = "evil"
	wrongIss := c
	c = goodClaims()
	c.DeviceID = ""
	noDevice := c
	c = goodClaims()
	c.Subject = ""
	noSubject := c
	c = goodClaims()
	c.ExpiresAt = nil
	noExp := c
	tamperedPayload := enc([]byte(`{"did":"d1","iss":"natter","sub":"admin","exp":9999999999}`))
	flipped := []byte(seg[2])
	if flipped[0] == 'A' {
		flipped[0] = 'B'
	} else {
		flipped[0] = 'A'
	}
	return map[string]string{
		"alg none (library)":        noneTok,
		"alg none, empty signature": noneHeader + "." + seg[1] + ".",
		"alg none, kept signature":  noneHeader + "." + seg[1] + "." + seg[2],
		"alg NONE":                  enc([]byte(`{"alg":"NONE","typ":"JWT"}`)) + "." + seg[1] + ".",
		"HS256 other key":           signed(t, jwt.SigningMethodHS256, []byte("another-key-0123456789abcdef0123"), goodClaims()),
		"HS512 same key":            signed(t, jwt.SigningMethodHS512, testKey, goodClaims()),
		"HS384 same key":            signed(t, jwt.SigningMethodHS384, testKey, goodClaims()),
		"tampered payload":          seg[0] + "." + tamperedPayload + "." + seg[2],
		"tampered signature":        seg[0] + "." + seg[1] + "." + string(flipped),
		"no signature":              seg[0] + "." + seg[1] + ".",
		"two segments":              seg[0] + "." + seg[1],
		"four segments":             good + "." + seg[2],
		"wrong issuer":              signed(t, jwt.SigningMethodHS256, testKey, wrongIss),
		"no device":                 signed(t, jwt.SigningMethodHS256, testKey, noDevice),
		"no subject":                signed(t, jwt.SigningMethodHS256, testKey, noSubject),
		"no expiry":                 signed(t, jwt.SigningMethodHS256, testKey, noExp),
		"empty":                     "",
		"garbage":                   "not a token",
		"dots":                      "..",
	}
}

func TestVerifyRefuses(t *testing.T) {
	s := NewSigner(testKey, time.Hour)
	good, err := s.Issue("u1", "d1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for name, tok := range forgedTokens(t, good) {
		c, err := s.Verify(tok)
		if !errors.Is(err, ErrInvalidToken) {
			t.Errorf("%s: want ErrInvalidToken, got %v (claims %+v)", name, err, c)
		}
		if c != (Claims{}) {
			t.Errorf("%s: refused token returned claims %+v", name, c)
		}
	}
}

func TestLoadOrCreateKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "dir", "signing.key")
	k1, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(k1) < 32 {
		t.Fatalf("key of %d bytes", len(k1))
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	if di, _ := os.Stat(filepath.Dir(path)); di.Mode().Perm()&0o077 != 0 {
		t.Errorf("key directory mode %v is open to others", di.Mode().Perm())
	}
	k2, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(k1) != string(k2) {
		t.Fatal("second call returned another key")
	}
	// A token signed before a restart verifies after it.
	tok, _ := NewSigner(k1, time.Hour).Issue("u1", "d1", time.Now())
	if _, err := NewSigner(k2, time.Hour).Verify(tok); err != nil {
		t.Fatal(err)
	}
	k3, err := LoadOrCreateKey(filepath.Join(t.TempDir(), "other.key"))
	if err != nil {
		t.Fatal(err)
	}
	if string(k3) == string(k1) {
		t.Fatal("two fresh keys are equal")
	}
}

func TestLoadOrCreateKeyUnreadable(t *testing.T) {
	// A path that is a directory cannot be read: an error, not a new key.
	dir := t.TempDir()
	if _, err := LoadOrCreateKey(dir); err == nil {
		t.Fatal("want an error for a directory")
	}
}
