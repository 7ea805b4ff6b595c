package selfcommunity

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/secret"
)

// jwtSource mints the HS256 access tokens SelfCommunity accepts for server-to-server calls
// (docs/api/authentication/jwt.md): claims user_id, token_type "access", jti, iat, exp,
// signed with the community's shared secret. A token is reused until it is within the
// refresh margin of its expiry, so steady traffic mints one token per ttl, not per request.
type jwtSource struct {
	secret secret.Value
	userID int64
	ttl    time.Duration
	now    func() time.Time

	mu      sync.Mutex
	token   string
	expires time.Time
}

func newJWTSource(cfg connectors.SystemConfig, now func() time.Time) (*jwtSource, []string) {
	var problems []string
	s := &jwtSource{secret: cfg.JWTSecret, ttl: DefaultJWTTTL, now: now}
	raw, ok := cfg.Options[OptionJWTUserID]
	if !ok || raw == "" {
		problems = append(problems, fmt.Sprintf("option %q is required with jwt_secret (the admin user the tokens act as)", OptionJWTUserID))
	} else if id, err := strconv.ParseInt(raw, 10, 64); err != nil || id <= 0 {
		problems = append(problems, fmt.Sprintf("option %q = %q must be a positive integer user id", OptionJWTUserID, raw))
	} else {
		s.userID = id
	}
	if raw, ok := cfg.Options[OptionJWTTTL]; ok {
		d, err := time.ParseDuration(raw)
		switch {
		case err != nil:
			problems = append(problems, fmt.Sprintf("option %q = %q is not a duration (e.g. 10m)", OptionJWTTTL, raw))
		case d < time.Minute || d > 24*time.Hour:
			problems = append(problems, fmt.Sprintf("option %q = %s must be between 1m and 24h", OptionJWTTTL, d))
		default:
			s.ttl = d
		}
	}
	if len(problems) > 0 {
		return nil, problems
	}
	return s, nil
}

// margin is the refresh margin, shortened for short lifetimes so a token is not replaced
// on every request.
func (s *jwtSource) margin() time.Duration {
	return min(JWTRefreshMargin, s.ttl/2)
}

// bearer returns a token valid for at least the refresh margin, minting one if needed.
func (s *jwtSource) bearer() (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if s.token != "" && s.expires.Sub(now) > s.margin() {
		return s.token, nil
	}
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", fmt.Errorf("mint jwt: jti: %w", err)
	}
	exp := now.Add(s.ttl)
	claims := jwt.MapClaims{
		"user_id":    s.userID,
		"token_type": "access",
		"jti":        hex.EncodeToString(jti[:]),
		"iat":        now.Unix(),
		"exp":        exp.Unix(),
	}
	signed, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(s.secret.Reveal()))
	if err != nil {
		// The jwt library's errors name the failure, never the key.
		return "", fmt.Errorf("mint jwt: %w", err)
	}
	s.token, s.expires = signed, exp
	return signed, nil
}

func (s *jwtSource) authorize(_ context.Context, r *http.Request) error {
	tok, err := s.bearer()
	if err != nil {
		return err
	}
	r.Header.Set("Authorization", "Bearer "+tok)
	return nil
}
