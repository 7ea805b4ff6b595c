// Package scimwire holds the SCIM 2.0 PatchOp message (RFC 7644 §3.5.2) and schema URIs:
// the wire shapes alone, for whoever speaks SCIM. The group writes that send them (both
// the scim connector's and Airtable's, with Airtable's object-form member values and
// fallbacks as options) are one client, connectors/scim/scimclient.
package scimwire

// Schema URIs (RFC 7643 §8.7.1, RFC 7644 §3.5.2).
const (
	SchemaGroup   = "urn:ietf:params:scim:schemas:core:2.0:Group"
	SchemaPatchOp = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
)

// NoTarget is the scimType of a remove whose filter matched nothing (RFC 7644 §3.12). A
// PatchOp is all-or-nothing, so one absent member fails the whole batch.
const NoTarget = "noTarget"

// PatchOp is one operation of a PatchOp request.
type PatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// PatchRequest is a PatchOp request body.
type PatchRequest struct {
	Schemas    []string  `json:"schemas"`
	Operations []PatchOp `json:"Operations"`
}

// MemberRef names a member by id in a members value.
type MemberRef struct {
	Value string `json:"value"`
}
