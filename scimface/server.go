// Package scimface is groupsync's own SCIM 2.0 service provider (RFC 7643/7644): the face
// identity providers (Okta, Entra ID, any SCIM client) push users and groups into. Each
// system of kind scim_inbound is one client, told apart by its bearer token. Every write is
// committed to the mirror database before it is answered (state.InboundWrite), and the
// flows reading the system pick it up at their next run, which the write triggers once the
// provider's burst has been quiet for the system's debounce (Trigger).
//
// RFC 7644's protocol (routing, body and PatchOp validation against the core schemas,
// discovery documents, ListResponse and error rendering) is github.com/elimity-com/scim,
// a SCIM server library; this package stores resources in Postgres behind its
// ResourceHandler, authenticates, limits, and smooths the documented quirks of Entra ID
// and Okta before the library sees a request (quirks.go).
//
// TLS is the operator's: the face speaks plain HTTP behind a reverse proxy or ingress.
package scimface

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	elimity "github.com/elimity-com/scim"
	scimerrors "github.com/elimity-com/scim/errors"
	"github.com/elimity-com/scim/optional"
	"github.com/elimity-com/scim/schema"
	"golang.org/x/time/rate"

	"github.com/groupsync/groupsync/state"
)

// BasePath is where the face is served: clients are given http(s)://host/scim/v2.
const BasePath = "/scim/v2"

// MaxResults is the most resources one list response holds by default
// (ServiceProviderConfig filter.maxResults); a larger count is served as this many.
const MaxResults = 200

// Client is one identity provider allowed to push: a scim_inbound system.
type Client struct {
	// System is the scim_inbound system its writes go to.
	System string
	// Token is the bearer token it presents.
	Token string
	// Rate and Burst bound its requests per second.
	Rate  float64
	Burst int
}

// Options configure a Server.
type Options struct {
	Store   *state.Store
	Clients []Client
	// MaxBodyBytes caps one request body (413 past it).
	MaxBodyBytes int64
	// MaxResults caps a list page; 0 means MaxResults.
	MaxResults int
	Logger     *slog.Logger
}

// Server serves BasePath for every client.
type Server struct {
	store   *state.Store
	clients []client
	maxBody int64
	maxPage int
	logger  *slog.Logger
	scim    http.Handler
}

type client struct {
	system string
	digest [32]byte // of the token: compared in constant time, never kept in clear
	limit  *rate.Limiter
}

type ctxKey struct{}

// systemOf is the scim_inbound system the authenticated request writes to.
func systemOf(r *http.Request) string { s, _ := r.Context().Value(ctxKey{}).(string); return s }

// New builds the face.
func New(opts Options) (*Server, error) {
	if opts.Store == nil {
		return nil, errors.New("scimface: no store")
	}
	s := &Server{store: opts.Store, maxBody: opts.MaxBodyBytes, maxPage: opts.MaxResults, logger: opts.Logger}
	if s.maxPage <= 0 {
		s.maxPage = MaxResults
	}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	if s.maxBody <= 0 {
		s.maxBody = 1 << 20
	}
	for _, c := range opts.Clients {
		if c.Token == "" {
			return nil, fmt.Errorf("scimface: system %s has no token", c.System)
		}
		s.clients = append(s.clients, client{system: c.System, digest: sha256.Sum256([]byte(c.Token)),
			limit: rate.NewLimiter(rate.Limit(c.Rate), max(c.Burst, 1))})
	}
	srv, err := elimity.NewServer(&elimity.ServerArgs{
		ServiceProviderConfig: serviceProviderConfig(s.maxPage),
		ResourceTypes: []elimity.ResourceType{
			{ID: optional.NewString("User"), Name: "User", Endpoint: "/Users", Description: optional.NewString("User Account"),
				Schema: schema.CoreUserSchema(), Handler: &users{s},
				SchemaExtensions: []elimity.SchemaExtension{{Schema: schema.ExtensionEnterpriseUser()}}},
			{ID: optional.NewString("Group"), Name: "Group", Endpoint: "/Groups", Description: optional.NewString("Group"),
				Schema: schema.CoreGroupSchema(), Handler: &groups{s}},
		},
	}, elimity.WithLogger(libLogger{s.logger}))
	if err != nil {
		return nil, fmt.Errorf("scimface: %w", err)
	}
	s.scim = http.StripPrefix("/scim", srv)
	return s, nil
}

// serviceProviderConfig claims what the face implements, and nothing more: filtering and
// PATCH, bearer tokens; no bulk, sort, password change or ETags (the library announces none).
func serviceProviderConfig(maxPage int) *elimity.ServiceProviderConfig {
	return &elimity.ServiceProviderConfig{
		DocumentationURI: optional.NewString("https://github.com/groupsync/groupsync/blob/main/docs/scim_inbound.md"),
		MaxResults:       maxPage, SupportFiltering: true, SupportPatch: true,
		AuthenticationSchemes: []elimity.AuthenticationScheme{{Type: elimity.AuthenticationTypeOauthBearerToken,
			Name: "Bearer token", Description: "The token of the scim_inbound system, as Authorization: Bearer <token>",
			Primary: true}},
	}
}

// ServeHTTP authenticates, limits and hands the request to the SCIM library.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != BasePath && !strings.HasPrefix(r.URL.Path, BasePath+"/") {
		writeError(w, http.StatusNotFound, "", "not a SCIM endpoint: the face is served under "+BasePath)
		return
	}
	c := s.authenticate(r)
	if c == nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="groupsync"`)
		writeError(w, http.StatusUnauthorized, "", "a valid bearer token is required")
		return
	}
	if !c.limit.Allow() {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusTooManyRequests, "", "too many requests from this client: slow down")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.maxBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeError(w, http.StatusRequestEntityTooLarge, "", fmt.Sprintf("the request body exceeds %d bytes (scim.max_body_bytes)", s.maxBody))
			return
		}
		writeError(w, http.StatusBadRequest, "invalidSyntax", "the request body could not be read")
		return
	}
	if r.Method == http.MethodPatch {
		body = normalizePatch(body)
	}
	r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, c.system))
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	s.scim.ServeHTTP(w, r)
}

// authenticate finds the client whose token the request carries. Every client's digest is
// compared, so the time taken does not tell which token came closest.
func (s *Server) authenticate(r *http.Request) *client {
	auth := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(auth, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return nil
	}
	d := sha256.Sum256([]byte(strings.TrimSpace(token)))
	var hit *client
	for i := range s.clients {
		if subtle.ConstantTimeCompare(d[:], s.clients[i].digest[:]) == 1 {
			hit = &s.clients[i]
		}
	}
	return hit
}

// writeError writes a SCIM error (RFC 7644 §3.12) for the checks done before the library.
func writeError(w http.ResponseWriter, status int, scimType, detail string) {
	w.Header().Set("Content-Type", "application/scim+json")
	w.WriteHeader(status)
	b, _ := scimerrors.ScimError{ScimType: scimerrors.ScimType(scimType), Detail: detail, Status: status}.MarshalJSON()
	_, _ = w.Write(b)
}

// libLogger hands the library's own errors to the process logger.
type libLogger struct{ l *slog.Logger }

func (l libLogger) Error(args ...any) { l.l.Error("scim face", "detail", fmt.Sprint(args...)) }

// Listen serves h on addr (scim.listen) until Shutdown. Timeouts bound slow clients: a
// provider's request is small (scim.max_body_bytes), so a minute is ample.
func Listen(addr string, h http.Handler, logger *slog.Logger) (*http.Server, net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("scim face: listen on %s (scim.listen): %w", addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute,
		WriteTimeout: time.Minute, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("scim face stopped", "error", err)
		}
	}()
	logger.Info("scim face listening", "addr", ln.Addr().String(), "path", BasePath)
	return srv, ln.Addr(), nil
}
