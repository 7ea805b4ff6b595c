package connectors

import "context"

// KindSCIMInbound is a system that identity providers push into over SCIM 2.0: groupsync
// serves it (package scimface) and keeps what it receives in the mirror database, and flows
// read it as a source like any other. It is never a target.
const KindSCIMInbound Kind = "scim_inbound"

// InboundSource reads what identity providers pushed to a scim_inbound system, for its
// connector (connectors/sciminbound). state.Store.Inbound implements it over the mirror's
// scim_* tables; each page is read in its own short transaction.
type InboundSource interface {
	// InboundGroups streams every group of system.
	InboundGroups(ctx context.Context, system string, fn func([]Group) error) error
	// InboundMembers streams the members of group id, each with its identity key inline
	// (Member.Email); ErrNotFound when the group does not exist.
	InboundMembers(ctx context.Context, system, id string, fn func([]Member) error) error
	// InboundAccounts streams the users ids name (every user when ids is nil), skipping
	// ids that name none.
	InboundAccounts(ctx context.Context, system string, ids []string, fn func([]Account) error) error
	// InboundAccountByKey finds the user whose identity key is key; ErrNotFound if none.
	InboundAccountByKey(ctx context.Context, system, key string) (Account, error)
	// InboundGroupByName finds the group named name (exactly, else by NormalizeName);
	// ErrNotFound if none.
	InboundGroupByName(ctx context.Context, system, name string) (Group, error)
	// InboundGroup reads group id; ErrNotFound if it does not exist.
	InboundGroup(ctx context.Context, system, id string) (Group, error)
}
