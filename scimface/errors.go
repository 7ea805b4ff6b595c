package scimface

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	elimity "github.com/elimity-com/scim"
	scimerrors "github.com/elimity-com/scim/errors"

	"github.com/groupsync/groupsync/state"
)

// resourceMeta is a resource's meta: its times, and a weak ETag of its version.
func resourceMeta(version int64, created, modified time.Time) elimity.Meta {
	c, m := created.UTC(), modified.UTC()
	return elimity.Meta{Created: &c, LastModified: &m, Version: fmt.Sprintf(`W/"%d"`, version)}
}

// scimError turns a store error into the SCIM error the client is answered with. Errors
// the client can act on say what was wrong; anything else is logged with the request's
// method and route and answered 500 without detail (no internals leave the face).
func (s *Server) scimError(r *http.Request, err error) error {
	var se scimerrors.ScimError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &se):
		return se
	case errors.Is(err, state.ErrInboundNotFound):
		return scimerrors.ScimErrorResourceNotFound(lastSegment(r.URL.Path))
	case errors.Is(err, state.ErrInboundUniqueness):
		return scimerrors.ScimError{ScimType: scimerrors.ScimTypeUniqueness, Status: http.StatusConflict,
			Detail: "another resource of this system already holds this userName or displayName"}
	case errors.Is(err, state.ErrInboundUnknownMember):
		return badValue(strings.TrimPrefix(err.Error(), "state: ") + " (members must be users pushed to this system; nested groups are not accepted)")
	case errors.Is(err, state.ErrInboundFilter):
		return scimerrors.ScimError{ScimType: scimerrors.ScimTypeInvalidFilter, Status: http.StatusBadRequest, Detail: err.Error()}
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return scimerrors.ScimError{Status: http.StatusServiceUnavailable, Detail: "the request ended before the mirror answered"}
	}
	s.logger.Error("scim face: the mirror failed a request", "system", systemOf(r), "method", r.Method,
		"route", route(r.URL.Path), "err", err)
	return scimerrors.ScimError{Status: http.StatusInternalServerError, Detail: "the mirror database failed this request; see groupsync's log"}
}

// route is the path's resource type, never an id (ids are not secret, but routes group).
func route(path string) string {
	rest := strings.TrimPrefix(strings.TrimPrefix(path, "/scim"), "/v2")
	typ, _, _ := strings.Cut(strings.TrimPrefix(rest, "/"), "/")
	return BasePath + "/" + typ
}

func lastSegment(path string) string { return path[strings.LastIndex(path, "/")+1:] }
