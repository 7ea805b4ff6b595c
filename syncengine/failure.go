package syncengine

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"

	"github.com/groupsync/groupsync/connectors"
)

// A system that cannot be read is a failure of the run, never a safety block: the guard
// blocks a plan it judges risky, and a run that could not read its source has no plan to
// judge, so there is nothing an operator could approve. Such a run ends failed (exit 1) with
// a reason naming the system and what kind of failure it was.

// sourceFailure is the error of a run whose source's group listing failed.
func sourceFailure(system string, err error) error {
	return fmt.Errorf("source %s %s; nothing was planned or pushed, the next run retries: %w",
		system, failureKind(err), err)
}

// failureKind names, for an operator, why a system could not be read.
func failureKind(err error) string {
	switch {
	case errors.Is(err, connectors.ErrUnauthorized):
		return "refused the credentials (check the token or secret)"
	case unreachable(err):
		return "is unreachable (check base_url, DNS, TLS and the network)"
	case errors.Is(err, connectors.ErrRateLimited):
		return "kept rate limiting the listing"
	default:
		return "could not be listed"
	}
}

// unreachable reports whether err is a failure to reach a system at all: connection
// refused or reset, DNS, TLS handshake or certificate, or a timeout.
func unreachable(err error) bool {
	var (
		dnsErr   *net.DNSError
		opErr    *net.OpError
		certErr  *tls.CertificateVerificationError
		authErr  x509.UnknownAuthorityError
		hostErr  x509.HostnameError
		recErr   tls.RecordHeaderError
		netErr   net.Error
		invalErr x509.CertificateInvalidError
	)
	switch {
	case errors.As(err, &dnsErr), errors.As(err, &opErr), errors.As(err, &certErr),
		errors.As(err, &authErr), errors.As(err, &hostErr), errors.As(err, &recErr),
		errors.As(err, &invalErr):
		return true
	case errors.As(err, &netErr) && netErr.Timeout():
		return true
	}
	// A request that ran out of time (apiclient's per-attempt timeout) without the
	// caller's context ending.
	return errors.Is(err, context.DeadlineExceeded)
}
