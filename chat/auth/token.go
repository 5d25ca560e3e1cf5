package auth

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Errors of Verify.
var (
	ErrInvalidToken = errors.New("invalid token")
	ErrExpiredToken = errors.New("token expired")
)

// Claims identify a device of a user.
type Claims struct {
	UserID   string
	DeviceID string
	Expires  time.Time
}

type jwtClaims struct {
	DeviceID string `json:"did"`
	jwt.RegisteredClaims
}

// Signer issues and verifies HS256 access tokens.
type Signer struct {
	key    []byte
	ttl    time.Duration
	parser *jwt.Parser
}

// LoadOrCreateKey reads the signing key at path, creating a random one
// (mode 0600) on first start.
func LoadOrCreateKey(path string) ([]byte, error) {
	key, err := os.ReadFile(path)
	if err == nil && len(key) >= 32 {
		return key, nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read signing key: %w", err)
	}
	key = make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("generate signing key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create key directory: %w", err)
	}
	if err := os.WriteFile(path, key, 0o600); err != nil {
		return nil, fmt.Errorf("write signing key: %w", err)
	}
	return key, nil
}

// NewSigner returns a signer for tokens that live ttl.
func NewSigner(key []byte, ttl time.Duration) *Signer {
	return &Signer{
		key: key,
		ttl: ttl,
		// Pinning the method refuses "none" and algorithm confusion.
		parser: jwt.NewParser(jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}), jwt.WithExpirationRequired(), jwt.WithIssuer("natter")),
	}
}

// TTL is the lifetime of issued tokens.
func (s *Signer) TTL() time.Duration { return s.ttl }

// Issue signs an access token for a device.
func (s *Signer) Issue(userID, deviceID string, now time.Time) (string, error) {
	c := jwtClaims{DeviceID: deviceID, RegisteredClaims: jwt.RegisteredClaims{
		Issuer: "natter", Subject: userID,
		IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(s.ttl)),
	}}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(s.key)
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return tok, nil
}

// Verify checks a token's signature, algorithm and expiry.
func (s *Signer) Verify(token string) (Claims, error) {
	var c jwtClaims
	_, err := s.parser.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return s.key, nil })
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return Claims{}, ErrExpiredToken
	case err != nil:
		return Claims{}, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	case c.Subject == "" || c.DeviceID == "":
		return Claims{}, fmt.Errorf("%w: missing subject or device", ErrInvalidToken)
	}
	return Claims{UserID: c.Subject, DeviceID: c.DeviceID, Expires: c.ExpiresAt.Time}, nil
}
