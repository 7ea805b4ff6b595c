// Package connectors defines the contract between the sync engine and the systems it keeps
// in step: what a connector lists (groups, members, accounts, streamed page by page), what it
// writes, what it declares it can do, and the typed errors the engine branches on.
//
// One package per system implements it (connectors/devrev, connectors/airtable, ...), each
// with a simulator of its API beside it (connectors/devrev/devrevsim, ...). The registry of
// kinds lives in connectors/registry so this package imports none of them.
package connectors

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"
)

// Kind names a type of system, as written in the configuration (`kind: devrev`).
type Kind string

// The kinds groupsync knows.
const (
	KindAirtable      Kind = "airtable"
	KindDevRev        Kind = "devrev"
	KindSelfCommunity Kind = "selfcommunity"
	KindSocialcast    Kind = "socialcast"
	// KindSCIM is any SCIM 2.0 service provider (RFC 7643/7644).
	KindSCIM Kind = "scim"
)

// MatchesByExtID reports whether accounts of this kind carry an SSO external id they can be
// matched by (systems.<name>.match_by: ext_id): only SelfCommunity's do (ext_id).
func (k Kind) MatchesByExtID() bool { return k == KindSelfCommunity }

// Visibility is a group's visibility as the mirror models it. Systems that do not model it
// report VisibilityUnknown, and the planner never writes it to them.
type Visibility string

// Visibilities.
const (
	VisibilityUnknown Visibility = ""
	VisibilityPublic  Visibility = "public"
	VisibilityPrivate Visibility = "private"
	// VisibilityHidden is a private group that is not listed to non-members
	// (SelfCommunity `privacy: private, visible: false`).
	VisibilityHidden Visibility = "hidden"
)

// Group is a group as it exists in one system. IDs are kept as the system's own strings,
// byte-exact: numeric ids are decoded from their JSON literal, never through float64.
type Group struct {
	ID          string
	Name        string
	Description string
	Visibility  Visibility
	// State is "active" or "archived" (Socialcast archives before it deletes).
	State string
	// MembershipManaged is true when the system computes the membership itself (DevRev
	// dynamic groups, Socialcast rule_managed groups): members cannot be written.
	MembershipManaged bool
	// System is true for groups the system owns (DevRev is_default): never updated or deleted.
	System bool
	// CreatedAt and ModifiedAt are the remote times where the API has them, else zero.
	CreatedAt  time.Time
	ModifiedAt time.Time
	// Raw is the record as received from the API.
	Raw json.RawMessage
	// Hash is the content hash the mirror compares to skip unchanged rows. The connector
	// computes it (ContentHash) so it can leave out caller-relative fields.
	Hash string
}

// Account is a user as it exists in one system.
type Account struct {
	ID string
	// Email is the account's identity key (see "Identity keys" in normalize.go): its
	// normalized email (NormalizeEmail), or ExtIDKey of its external id on a system that
	// matches by ext_id; empty when the system did not reveal it.
	Email       string
	DisplayName string
	// State is the system's own account state (active, deactivated, provisioned, ...).
	State string
	Raw   json.RawMessage
	Hash  string
}

// inactiveStates are the account states, as connectors report them, of a person who can
// no longer use the system: DevRev's deactivated and deleted, Airtable's deactivated,
// SelfCommunity's blocked and deleted, Socialcast's inactive and terminated.
var inactiveStates = map[string]bool{"deactivated": true, "deleted": true, "blocked": true,
	"inactive": true, "terminated": true}

// AccountInactive reports whether an account in this state is gone for groupsync's purposes:
// the mirror tombstones it, nobody is added to a group through it, and a source member with
// it is known not to belong anywhere. Other states (active, provisioned, locked, shadow,
// unregistered, ...) are live.
func AccountInactive(state string) bool { return inactiveStates[strings.ToLower(state)] }

// Member types.
const (
	MemberUser  = "user"
	MemberGroup = "group" // a nested group (DevRev allows groups as members)
)

// Member is one membership of an account (or nested group) in a group.
type Member struct {
	GroupID   string
	AccountID string
	// Type is MemberUser or MemberGroup; a system-specific subtype may follow after a colon
	// ("user:rev_user").
	Type string
	// Role is "member", "manager" or "admin", lower-cased.
	Role string
	// Email is set when the API returns the member's identity key inline with the
	// membership (Airtable meta API: the email; SelfCommunity matching by ext_id: ExtIDKey),
	// normalized; the engine then needs no account lookup to know it.
	Email string
	// DisplayName comes inline with the membership where the API provides it.
	DisplayName string
}

// Listing reports how a streamed list call went. Complete is true only when every page was
// read: the mirror tombstones records that are absent only after a complete listing.
type Listing struct {
	Complete bool
	Pages    int
	Items    int
	// Unreadable are groups the listing named but could not read (Airtable: a group id of
	// the enterprise answering 404 or 403 INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND). Such a
	// listing is not complete: those groups are neither gone nor known, so the mirror keeps
	// them and nobody is removed from their targets this run.
	Unreadable []string
	// UnreadableReasons says, by group id, why an Unreadable group could not be read, for
	// the operator (where the connector knows more than "unreadable").
	UnreadableReasons map[string]string
}

// GroupSpec is what the engine asks a target to create or update a group to.
type GroupSpec struct {
	Name        string
	Description string
	// Visibility is VisibilityUnknown when the source does not model it; the target then
	// uses its default on create and leaves it alone on update.
	Visibility Visibility
}

// DeleteMode says how a group is removed from a target.
type DeleteMode string

// Delete modes.
const (
	DeleteArchive DeleteMode = "archive"
	DeleteHard    DeleteMode = "delete"
)

// Capabilities are what a connector can do, declared up front so the planner can mark a
// change the target cannot perform as skipped/unsupported instead of attempting it.
type Capabilities struct {
	CreateGroup  bool
	UpdateGroup  bool
	ArchiveGroup bool
	// RestoreGroup is true when an archived group can be brought back (Restorer); where it
	// cannot, a restored source group gets a new target group instead.
	RestoreGroup bool
	DeleteGroup  bool
	AddMember    bool
	RemoveMember bool
	// WriteRoles is true when member roles can be written (Airtable SCIM cannot).
	WriteRoles bool
	// Visibility is true when the system models group visibility on write.
	Visibility bool
	// HiddenVisibility is true when the system tells hidden groups from private ones; where
	// it does not, a hidden source group is written (and compared) as private.
	HiddenVisibility bool
	// MaxMembersPerWrite is how many members one add/remove call carries (1 where the API
	// takes one per call).
	MaxMembersPerWrite int
	// Description is true when groups carry a description.
	Description bool
}

// Connector is one configured system. List calls stream pages through fn, never a
// whole-tenant slice; fn returning an error stops the listing and that error is returned.
type Connector interface {
	// Name is the configured system name (e.g. devrev-prod), used in errors and logs.
	Name() string
	Kind() Kind
	Capabilities() Capabilities

	// ListGroups streams every group the credentials can see.
	ListGroups(ctx context.Context, fn func([]Group) error) (Listing, error)
	// ListMembers streams the members of one group.
	ListMembers(ctx context.Context, groupID string, fn func([]Member) error) (Listing, error)
	// ListAccounts streams accounts. With ids nil it lists every account the system can
	// list; with ids it resolves just those (batched where the API allows), skipping ids
	// that no longer exist. A connector whose API cannot list every account returns
	// ErrUnsupported for ids == nil.
	ListAccounts(ctx context.Context, ids []string, fn func([]Account) error) (Listing, error)
	// FindAccountByEmail looks an account up by its identity key (a normalized email, or an
	// ExtIDKey on a system that matches by ext_id); ErrNotFound if none.
	FindAccountByEmail(ctx context.Context, email string) (Account, error)
	// FindGroupByName looks a group up by name: the exact name first, else a group whose
	// NormalizeName key equals the name's (the key the planner adopts by); ErrNotFound if
	// none. The engine uses it to adopt instead of duplicating after a create whose outcome
	// is unknown.
	FindGroupByName(ctx context.Context, name string) (Group, error)
	// GetGroup reads one group; ErrNotFound if it does not exist.
	GetGroup(ctx context.Context, id string) (Group, error)
}

// Writer is implemented by connectors that write. Each method is only called when the
// matching capability is declared. Writes must be idempotent in effect: adding a member who
// is already there, or removing one who is not, succeeds.
type Writer interface {
	CreateGroup(ctx context.Context, spec GroupSpec) (Group, error)
	UpdateGroup(ctx context.Context, id string, spec GroupSpec) (Group, error)
	DeleteGroup(ctx context.Context, id string, mode DeleteMode) error
	// AddMembers adds accounts to a group; len(accountIDs) <= Capabilities.MaxMembersPerWrite.
	AddMembers(ctx context.Context, groupID string, accountIDs []string) error
	// RemoveMembers removes accounts from a group; same batching rule as AddMembers.
	RemoveMembers(ctx context.Context, groupID string, accountIDs []string) error
}

// ErrNameTaken marks a create or rename that the target refused because another group
// already holds the name (409, or the API's own "already taken"). Connectors join it to the
// API's error (fmt.Errorf("%w: %w", ErrNameTaken, err)), so errors.Is finds both it and the
// error's class; the engine orders renames and reports name_conflict by it.
var ErrNameTaken = errors.New("name taken")

// Restorer is implemented by connectors that can un-archive a group (Capabilities.RestoreGroup).
// Restoring a group that is not archived succeeds and returns it as it is.
type Restorer interface {
	RestoreGroup(ctx context.Context, id string) (Group, error)
}

// InlineMemberLister is implemented by connectors whose API returns a group's members with
// the group itself (Airtable's meta API): the engine then lists both in one pass instead of
// calling ListMembers per group. fn receives one group and all of its members; complete
// reports whether that group's member list was read whole.
type InlineMemberLister interface {
	ListGroupsWithMembers(ctx context.Context, fn func(g Group, members []Member, complete bool) error) (Listing, error)
}

// ExpectedGroup is a group a listing was expected to return: one the mirror holds live, or
// an id the configuration names.
type ExpectedGroup struct {
	ID string
	// Visibility is the group's last known visibility; VisibilityUnknown for an id only the
	// configuration names.
	Visibility Visibility
}

// UnlistedReader is implemented by connectors whose group listing can leave out groups that
// still exist: SelfCommunity's group search omits hidden groups the token's user is not in,
// so absence from a complete listing is not knowledge that a group is gone. After a
// listing that read every page, the engine passes the groups it expected and did not get;
// the connector reads each by id. fn receives the groups it could read, which the engine
// takes as listed. Listing.Unreadable names those that exist, or may (a hidden group can
// answer 404 to a token that is not in it), but could not be read, with the reason in
// UnreadableReasons: the mirror keeps them and nobody is removed through them. Any other
// expected group is gone. Listing.Complete is false when the reads stopped early.
type UnlistedReader interface {
	ReadUnlisted(ctx context.Context, expected []ExpectedGroup, fn func([]Group) error) (Listing, error)
}

// WriteProber is implemented by connectors whose API offers a read-only call that needs the
// same access as the connector's writes (Airtable's SCIM API, which wants the
// enterprise.scim.usersAndGroups:manage scope). `groupsync check` calls it for systems a
// flow writes to, so a token that can read but not write is caught before a run plans
// changes it cannot push. detail says what the probe established, for the operator.
type WriteProber interface {
	ProbeWrite(ctx context.Context) (detail string, err error)
}
