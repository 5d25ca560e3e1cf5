package auth

// Fuzz targets: go test -run '^$' -fuzz '^FuzzVerify$' -fuzztime 20s ./gateway/auth
// Crashers are kept under testdata/fuzz/<target> and rerun by go test.

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/argon2"
)

// signedByTestKey reports whether tok's third segment is the HS256 MAC of
// the first two under testKey: the only tokens Verify may accept.
func signedByTestKey(tok string) bool {
	seg := strings.Split(tok, ".")
	if len(seg) != 3 {
		return false
	}
	sig, err := base64.RawURLEncoding.DecodeString(seg[2])
	if err != nil {
		return false
	}
	m := hmac.New(sha256.New, testKey)
	m.Write([]byte(seg[0] + "." + seg[1]))
	return hmac.Equal(sig, m.Sum(nil))
}

func FuzzVerify(f *testing.F) {
	s := NewSigner(testKey, time.Hour)
	good, err := s.Issue("u1", "d1", time.Now())
	if err != nil {
		f.Fatal(err)
	}
	// A token valid until 2286, so the corpus stays meaningful.
	farFuture := jwtClaims{DeviceID: "d1", RegisteredClaims: jwt.RegisteredClaims{
		Issuer: "natter", Subject: "u1", ExpiresAt: jwt.NewNumericDate(time.Unix(9999999999, 0)),
	}}
	long, err := jwt.NewWithClaims(jwt.SigningMethodHS256, farFuture).SignedString(testKey)
	if err != nil {
		f.Fatal(err)
	}
	expired, _ := NewSigner(testKey, time.Second).Issue("u1", "d1", time.Now().Add(-2*time.Hour))
	f.Add(good)
	f.Add(long)
	f.Add(expired)
	for _, tok := range forgedTokens(f, long) {
		f.Add(tok)
	}
	enc := base64.RawURLEncoding.EncodeToString
	seg := strings.Split(long, ".")
	f.Add(enc([]byte(`{"alg":"none"}`)) + "." + seg[1] + ".")
	f.Add(enc([]byte(`{"alg":"HS256","typ":"JWT","kid":"../../etc/passwd"}`)) + "." + seg[1] + "." + seg[2])
	f.Add(enc([]byte(`{"alg":"RS256"}`)) + "." + seg[1] + "." + seg[2])
	f.Add(seg[0] + "." + seg[1] + "." + seg[2] + "=")
	f.Add(seg[0] + "=." + seg[1] + "." + seg[2])
	f.Add(strings.ReplaceAll(long, "-", "+"))
	f.Add(enc([]byte(`{"alg":"HS256"}`)) + "." + enc([]byte(`{"did":"d","sub":"u","iss":"natter","exp":1e300}`)) + ".")
	f.Add(enc([]byte(`{"alg":"HS256"}`)) + "." + enc([]byte(`{"did":1,"sub":[],"iss":"natter","exp":"x"}`)) + ".")
	f.Add(enc([]byte(`null`)) + "." + enc([]byte(`null`)) + ".")
	f.Add("\xff.\xff.\xff")
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := s.Verify(tok)
		if err != nil {
			if !errors.Is(err, ErrInvalidToken) && !errors.Is(err, ErrExpiredToken) {
				t.Fatalf("error %v is neither ErrInvalidToken nor ErrExpiredToken", err)
			}
			if c != (Claims{}) {
				t.Fatalf("refused token returned claims %+v", c)
			}
			if errors.Is(err, ErrExpiredToken) && !signedByTestKey(tok) {
				t.Fatalf("an unsigned token reported as expired (the client would refresh): %q", tok)
			}
			return
		}
		if !signedByTestKey(tok) {
			t.Fatalf("accepted a token not signed by the key: %q", tok)
		}
		hdr, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
		var h struct {
			Alg string `json:"alg"`
		}
		if json.Unmarshal(hdr, &h) != nil || h.Alg != "HS256" {
			t.Fatalf("accepted a token with header %q", hdr)
		}
		if c.UserID == "" || c.DeviceID == "" || !c.Expires.After(time.Now().Add(-time.Second)) {
			t.Fatalf("accepted claims %+v", c)
		}
	})
}

// argonParams parses a hash's parameters the way CheckPassword does.
func argonParams(hash string) (m, t uint32, p uint8, key []byte, ok bool) {
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil {
		return
	}
	if _, err := b64.DecodeString(parts[4]); err != nil {
		return
	}
	key, err := b64.DecodeString(parts[5])
	if err != nil {
		return
	}
	return m, t, p, key, true
}

func FuzzCheckPassword(f *testing.F) {
	salt := []byte("0123456789abcdef")
	cheap := func(pw string, m, t uint32, p uint8, n uint32) string {
		return fmt.Sprintf("$argon2id$v=19$m=%d,t=%d,p=%d$%s$%s", m, t, p, b64.EncodeToString(salt),
			b64.EncodeToString(argon2.IDKey([]byte(pw), salt, t, m, p, n)))
	}
	s64 := b64.EncodeToString(salt)
	k32 := b64.EncodeToString(make([]byte, 32))
	f.Add(cheap("password", 64, 1, 1, 32), "password")
	f.Add(cheap("password", 64, 1, 1, 32), "passwore")
	f.Add(cheap("", 8, 1, 1, 4), "")
	f.Add(cheap("pw", 64, 2, 4, 1), "pw")
	f.Add("$argon2id$v=19$m=64,t=0,p=1$"+s64+"$"+k32, "password")
	f.Add("$argon2id$v=19$m=64,t=1,p=0$"+s64+"$"+k32, "password")
	f.Add("$argon2id$v=19$m=0,t=0,p=0$$", "")
	f.Add("$argon2id$v=19$m=64,t=1,p=1$"+s64+"$", "anything")
	f.Add("$argon2id$v=19$m=64,t=1,p=1$$", "")
	f.Add("$argon2id$v=19$m=64,t=1,p=256$"+s64+"$"+k32, "password")
	f.Add("$argon2id$v=19$m=4294967295,t=1,p=1$"+s64+"$"+k32, "password")
	f.Add("$argon2id$v=19$m=64,t=1,p=1,x=2$"+s64+"$"+k32, "password")
	f.Add("$argon2id$v=19$m=+64,t=01,p=1$"+s64+"$"+k32, "password")
	f.Add("$argon2i$v=19$m=64,t=1,p=1$"+s64+"$"+k32, "password")
	f.Add("$argon2id$v=19$m=64,t=1,p=1$"+s64+"==$"+k32, "password")
	f.Add("$argon2id$$$$", "")
	f.Add("", "")
	f.Add("\xff$argon2id$\x00$m=1,t=1,p=1$$", "\xff")
	f.Fuzz(func(t *testing.T, hash, password string) {
		m, tt, _, key, parsed := argonParams(hash)
		if parsed {
			// Resource bound of the harness, not of CheckPassword: argon2 with
			// the stored m and t can take any memory (up to 4 TiB) and time.
			if m > 256 || tt > 2 || len(key) > 1024 {
				t.Skip("parameters too expensive to fuzz")
			}
		}
		// A panic fails this input without killing the rest of the suite.
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("CheckPassword(%q) panics: %v", hash, r)
			}
		}()
		ok, err := CheckPassword(hash, password)
		if err != nil && ok {
			t.Fatal("true with an error")
		}
		if ok && !parsed {
			t.Fatalf("accepted hash %q that does not parse", hash)
		}
		if ok && len(key) == 0 {
			t.Fatalf("an empty key matches every password: %q", hash)
		}
		if err == nil && !parsed {
			t.Fatalf("no error for malformed hash %q", hash)
		}
	})
}
