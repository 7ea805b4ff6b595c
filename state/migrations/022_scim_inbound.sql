-- SCIM face (issue 15 item 2): what identity providers push into groupsync over SCIM 2.0,
-- for systems of kind scim_inbound. These tables are the source of truth for such a
-- system: the face writes them (every write committed before it is answered), and the
-- system's connector reads them back when a flow pulls it, so the pushed groups go through
-- the same mirror, plan and guard as any other source's.

CREATE TABLE scim_users (
    system      text        NOT NULL,
    id          uuid        NOT NULL DEFAULT gen_random_uuid(),
    user_name   text        NOT NULL,
    external_id text,
    active      boolean     NOT NULL DEFAULT true,
    -- email is the identity key (connectors.NormalizeEmail) of emails[primary].value, else
    -- of the first email, else of userName when it is an address: as the scim connector
    -- reads a provider's users. The face computes it; attrs keep what was sent.
    email       text,
    display_name text,
    -- attrs are the resource's attributes as accepted (id, meta and schemas left out).
    attrs       jsonb       NOT NULL,
    version     bigint      NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    modified_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (system, id)
);
COMMENT ON TABLE scim_users IS 'Users an identity provider pushed to a scim_inbound system (RFC 7643 User).';
-- userName is unique per service provider, compared without case (RFC 7643 §4.1.1).
CREATE UNIQUE INDEX scim_users_user_name ON scim_users (system, lower(user_name));
CREATE INDEX scim_users_email ON scim_users (system, email);
CREATE INDEX scim_users_external_id ON scim_users (system, external_id);

CREATE TABLE scim_groups (
    system       text        NOT NULL,
    id           uuid        NOT NULL DEFAULT gen_random_uuid(),
    display_name text        NOT NULL,
    external_id  text,
    attrs        jsonb       NOT NULL,
    version      bigint      NOT NULL DEFAULT 1,
    created_at   timestamptz NOT NULL DEFAULT now(),
    modified_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (system, id)
);
COMMENT ON TABLE scim_groups IS 'Groups an identity provider pushed to a scim_inbound system (RFC 7643 Group; members in scim_members).';
-- RFC 7643 leaves displayName's uniqueness to the provider. groupsync keeps it unique per
-- system: two source groups of one name would claim one target group (invariant 1).
CREATE UNIQUE INDEX scim_groups_display_name ON scim_groups (system, display_name);
CREATE INDEX scim_groups_external_id ON scim_groups (system, external_id);

CREATE TABLE scim_members (
    system   text NOT NULL,
    group_id uuid NOT NULL,
    user_id  uuid NOT NULL,
    PRIMARY KEY (system, group_id, user_id),
    FOREIGN KEY (system, group_id) REFERENCES scim_groups ON DELETE CASCADE,
    FOREIGN KEY (system, user_id) REFERENCES scim_users ON DELETE CASCADE
);
COMMENT ON TABLE scim_members IS 'Members of scim_groups: users only (the face refuses nested groups).';
CREATE INDEX scim_members_user ON scim_members (system, user_id);

-- One row per scim_inbound system that has been written to, for the debounced trigger:
-- the daemon requests a run of the flows reading the system once writes have been quiet
-- for the debounce, or once the oldest untriggered write is older than the longest delay.
CREATE TABLE scim_inbound_writes (
    system           text        PRIMARY KEY,
    writes           bigint      NOT NULL DEFAULT 0,
    last_write_at    timestamptz NOT NULL,
    -- first_pending_at is the first write since the last trigger; NULL when none is pending.
    first_pending_at timestamptz,
    triggered_at     timestamptz
);
COMMENT ON TABLE scim_inbound_writes IS 'When each scim_inbound system was last written, and when its flows were last triggered by it.';
