-- The mirror: what groupsync last saw in every configured system, plus the runs and planned
-- changes of the sync engine. Runs with search_path set to the mirror schema, so nothing here
-- names the schema.
--
-- Sync metadata (origin_system, external_reference, last_sync_in_*, last_sync_out_*) lives
-- inline on each record row, so recording a sync is one row write per record, not two; the
-- sync_metadata view presents it as one row per record, shaped after DevRev's sync_metadata.

CREATE TABLE systems (
    name                  text PRIMARY KEY,
    kind                  text NOT NULL,
    base_url              text NOT NULL DEFAULT '',
    first_seen_at         timestamptz NOT NULL DEFAULT now(),
    last_pull_started_at  timestamptz,
    last_pull_finished_at timestamptz,
    last_pull_complete    boolean,
    last_complete_pull_at timestamptz,
    group_count           bigint NOT NULL DEFAULT 0,
    account_count         bigint NOT NULL DEFAULT 0,
    membership_count      bigint NOT NULL DEFAULT 0
);
COMMENT ON TABLE systems IS 'One row per configured system (devrev-prod, airtable, ...) as last seen by groupsync. The pull time of the mirror lives here, not on each record, so an unchanged record costs no write.';
COMMENT ON COLUMN systems.name IS 'The configured system name (the key under systems: in the configuration).';
COMMENT ON COLUMN systems.kind IS 'Connector kind: airtable, devrev, selfcommunity, socialcast.';
COMMENT ON COLUMN systems.base_url IS 'API base URL the system was last pulled from.';
COMMENT ON COLUMN systems.last_pull_started_at IS 'Start of the last merge transaction (groups, accounts or memberships) that committed for this system.';
COMMENT ON COLUMN systems.last_pull_finished_at IS 'Commit time of that merge.';
COMMENT ON COLUMN systems.last_pull_complete IS 'Whether the last group or account listing read every page. Records absent from an incomplete listing are not tombstoned.';
COMMENT ON COLUMN systems.last_complete_pull_at IS 'Start of the last complete group or account listing merge.';
COMMENT ON COLUMN systems.group_count IS 'Live (not tombstoned) groups of the system in the mirror, recomputed by each merge.';
COMMENT ON COLUMN systems.account_count IS 'Live accounts of the system in the mirror, recomputed by each account merge.';
COMMENT ON COLUMN systems.membership_count IS 'Live memberships of the system in the mirror, recomputed by each membership or group merge.';

CREATE TABLE groups (
    system                text NOT NULL REFERENCES systems (name),
    external_id           text NOT NULL,
    name                  text NOT NULL,
    description           text NOT NULL DEFAULT '',
    visibility            text NOT NULL DEFAULT '',
    state                 text NOT NULL DEFAULT '',
    membership_managed    boolean NOT NULL DEFAULT false,
    is_system             boolean NOT NULL DEFAULT false,
    remote_created_at     timestamptz,
    remote_modified_at    timestamptz,
    raw                   jsonb,
    hash                  text NOT NULL,
    first_seen_at         timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    deleted_at            timestamptz,
    origin_system         text,
    external_reference    text,
    last_sync_in_status   text CHECK (last_sync_in_status IN ('succeeded', 'failed', 'modified', 'staged', 'skipped', 'blocked')),
    last_sync_in_date     timestamptz,
    last_sync_in_error    text,
    last_sync_out_status  text CHECK (last_sync_out_status IN ('succeeded', 'failed', 'modified', 'staged', 'skipped', 'blocked')),
    last_sync_out_date    timestamptz,
    last_sync_out_error   text,
    PRIMARY KEY (system, external_id)
);
COMMENT ON TABLE groups IS 'Groups as they exist in each system, one row per (system, external_id). Rows are never deleted: a group absent from a complete listing gets deleted_at.';
COMMENT ON COLUMN groups.external_id IS 'The system''s own id, byte-exact (numeric ids kept as their JSON literal).';
COMMENT ON COLUMN groups.visibility IS 'public, private or hidden (a private group not listed to non-members); empty when the system does not model visibility.';
COMMENT ON COLUMN groups.state IS 'active or archived (Socialcast archives before it deletes); empty when the system has no such notion.';
COMMENT ON COLUMN groups.membership_managed IS 'True when the system computes membership itself (DevRev dynamic groups, Socialcast rule-managed groups): groupsync never writes its members.';
COMMENT ON COLUMN groups.is_system IS 'True for groups the system owns (DevRev is_default): never updated or deleted by groupsync.';
COMMENT ON COLUMN groups.remote_created_at IS 'Creation time reported by the system, NULL when its API does not say.';
COMMENT ON COLUMN groups.remote_modified_at IS 'Last modification time reported by the system, NULL when its API does not say.';
COMMENT ON COLUMN groups.raw IS 'The record as the API returned it; NULL when the connector kept none.';
COMMENT ON COLUMN groups.hash IS 'Content hash computed by the connector (caller-relative fields left out); a merge rewrites the row only when it or a mapped column differs.';
COMMENT ON COLUMN groups.first_seen_at IS 'When groupsync first saw the group.';
COMMENT ON COLUMN groups.updated_at IS 'When the row last changed (content, tombstone or revival); unchanged pulls do not touch it.';
COMMENT ON COLUMN groups.deleted_at IS 'Tombstone: when a complete listing of the system no longer had the group. NULL while it exists; cleared if it reappears.';
COMMENT ON COLUMN groups.origin_system IS 'System the group originated in: this system when first seen by a pull; the source system when groupsync created it here.';
COMMENT ON COLUMN groups.external_reference IS 'Id of the counterpart record in origin_system, set by the engine when it created this record from another system.';
COMMENT ON COLUMN groups.last_sync_in_status IS 'Outcome of the last pull that touched the row: succeeded (first seen), modified (changed, tombstoned or revived), failed, staged, skipped, blocked.';
COMMENT ON COLUMN groups.last_sync_in_date IS 'When last_sync_in_status was set.';
COMMENT ON COLUMN groups.last_sync_in_error IS 'Error of the last failed pull of this record, NULL otherwise.';
COMMENT ON COLUMN groups.last_sync_out_status IS 'Outcome of the last write groupsync made for this record: succeeded, failed, skipped, blocked, staged.';
COMMENT ON COLUMN groups.last_sync_out_date IS 'When last_sync_out_status was set.';
COMMENT ON COLUMN groups.last_sync_out_error IS 'Error of the last failed write, NULL otherwise.';

CREATE TABLE accounts (
    system                text NOT NULL REFERENCES systems (name),
    external_id           text NOT NULL,
    email                 text NOT NULL DEFAULT '',
    display_name          text NOT NULL DEFAULT '',
    state                 text NOT NULL DEFAULT '',
    raw                   jsonb,
    hash                  text NOT NULL,
    first_seen_at         timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    deleted_at            timestamptz,
    origin_system         text,
    external_reference    text,
    last_sync_in_status   text CHECK (last_sync_in_status IN ('succeeded', 'failed', 'modified', 'staged', 'skipped', 'blocked')),
    last_sync_in_date     timestamptz,
    last_sync_in_error    text,
    last_sync_out_status  text CHECK (last_sync_out_status IN ('succeeded', 'failed', 'modified', 'staged', 'skipped', 'blocked')),
    last_sync_out_date    timestamptz,
    last_sync_out_error   text,
    PRIMARY KEY (system, external_id)
);
CREATE INDEX accounts_system_email_idx ON accounts (system, email);
COMMENT ON TABLE accounts IS 'Users as they exist in each system, one row per (system, external_id). Accounts are matched across systems by email. Never deleted: tombstoned with deleted_at.';
COMMENT ON COLUMN accounts.email IS 'Normalized (trimmed, lower-cased) email, the cross-system matching key; empty when the system did not reveal it.';
COMMENT ON COLUMN accounts.state IS 'The system''s own account state (active, deactivated, provisioned, ...).';
COMMENT ON COLUMN accounts.raw IS 'The record as the API returned it; NULL when the connector kept none.';
COMMENT ON COLUMN accounts.hash IS 'Content hash computed by the connector; a merge rewrites the row only when it or a mapped column differs.';
COMMENT ON COLUMN accounts.updated_at IS 'When the row last changed; unchanged pulls do not touch it.';
COMMENT ON COLUMN accounts.deleted_at IS 'Tombstone: when a complete account listing no longer had the account; cleared if it reappears.';
COMMENT ON COLUMN accounts.origin_system IS 'System the account originated in (see groups.origin_system).';
COMMENT ON COLUMN accounts.external_reference IS 'Id of the counterpart record in origin_system (see groups.external_reference).';
COMMENT ON COLUMN accounts.last_sync_in_status IS 'See groups.last_sync_in_status.';
COMMENT ON COLUMN accounts.last_sync_out_status IS 'See groups.last_sync_out_status.';

CREATE TABLE memberships (
    system                text NOT NULL,
    group_id              text NOT NULL,
    account_id            text NOT NULL,
    member_type           text NOT NULL DEFAULT 'user',
    role                  text NOT NULL DEFAULT '',
    email                 text NOT NULL DEFAULT '',
    first_seen_at         timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    deleted_at            timestamptz,
    added_by_run          bigint,
    origin_system         text,
    external_reference    text,
    last_sync_in_status   text CHECK (last_sync_in_status IN ('succeeded', 'failed', 'modified', 'staged', 'skipped', 'blocked')),
    last_sync_in_date     timestamptz,
    last_sync_in_error    text,
    last_sync_out_status  text CHECK (last_sync_out_status IN ('succeeded', 'failed', 'modified', 'staged', 'skipped', 'blocked')),
    last_sync_out_date    timestamptz,
    last_sync_out_error   text,
    PRIMARY KEY (system, group_id, account_id),
    FOREIGN KEY (system, group_id) REFERENCES groups (system, external_id)
);
COMMENT ON TABLE memberships IS 'Who is in which group, per system. Memberships are tombstoned (deleted_at) only within groups whose member listing completed, and when their group is tombstoned; never deleted.';
COMMENT ON COLUMN memberships.group_id IS 'groups.external_id of the group in the same system.';
COMMENT ON COLUMN memberships.account_id IS 'accounts.external_id of the member in the same system (or a group id for nested groups, see member_type). Not a foreign key: some systems cannot list every account.';
COMMENT ON COLUMN memberships.member_type IS 'user or group (nested group), optionally with a system subtype after a colon (user:rev_user).';
COMMENT ON COLUMN memberships.role IS 'member, manager or admin, lower-cased.';
COMMENT ON COLUMN memberships.email IS 'Normalized email when the API returned it inline with the membership (Airtable), so no account lookup is needed; empty otherwise.';
COMMENT ON COLUMN memberships.updated_at IS 'When the row last changed (type, role, email, tombstone, revival); unchanged pulls do not touch it.';
COMMENT ON COLUMN memberships.deleted_at IS 'Tombstone: when a complete member listing of the group no longer had the member, or the group itself was tombstoned.';
COMMENT ON COLUMN memberships.added_by_run IS 'runs.id of the groupsync run that added this member, NULL when groupsync did not add it.';
COMMENT ON COLUMN memberships.origin_system IS 'System the membership originated in (see groups.origin_system).';
COMMENT ON COLUMN memberships.external_reference IS 'Key of the counterpart membership in origin_system, set by the engine.';
COMMENT ON COLUMN memberships.last_sync_in_status IS 'See groups.last_sync_in_status.';
COMMENT ON COLUMN memberships.last_sync_out_status IS 'See groups.last_sync_out_status.';

CREATE SEQUENCE link_id_seq;
COMMENT ON SEQUENCE link_id_seq IS 'Source of links.link_id: one value per mirror group.';

CREATE TABLE links (
    link_id        bigint NOT NULL,
    system         text NOT NULL REFERENCES systems (name),
    external_id    text NOT NULL,
    flow           text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    created_by_run bigint,
    PRIMARY KEY (system, external_id),
    UNIQUE (link_id, system)
);
COMMENT ON TABLE links IS 'Ties the groups that stand for the same group in several systems: rows sharing a link_id are one mirror group. A group belongs to at most one link, and a link holds at most one group per system.';
COMMENT ON COLUMN links.link_id IS 'The mirror group id, from link_id_seq.';
COMMENT ON COLUMN links.external_id IS 'groups.external_id in that system. Not a foreign key: the engine may record a link for a group it just created before the next pull mirrors it.';
COMMENT ON COLUMN links.flow IS 'The configured flow that made the link.';
COMMENT ON COLUMN links.created_by_run IS 'runs.id of the run that made the link (by adoption or creation), NULL when configured by hand.';

CREATE TABLE runs (
    id              bigserial PRIMARY KEY,
    flow            text NOT NULL,
    trigger         text NOT NULL CHECK (trigger IN ('schedule', 'once', 'manual', 'apply', 'plan')),
    status          text NOT NULL CHECK (status IN ('running', 'succeeded', 'partial', 'failed', 'blocked', 'dry_run', 'planned')),
    dry_run         boolean NOT NULL DEFAULT false,
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    counts          jsonb NOT NULL DEFAULT '{}',
    error           text,
    blocked_reason  text,
    approved_at     timestamptz,
    approved_by     text,
    approved_run_id bigint REFERENCES runs (id)
);
COMMENT ON TABLE runs IS 'One row per run of a flow: a scheduled or one-shot sync, a plan, or the apply of a stored plan.';
COMMENT ON COLUMN runs.trigger IS 'What started the run: schedule (daemon), once (sync --once), manual, apply (groupsync apply RUN), plan (groupsync plan).';
COMMENT ON COLUMN runs.status IS 'running until it ends; then succeeded, partial (some changes failed), failed, blocked (a safety check stopped it), dry_run, or planned (a stored plan awaiting apply).';
COMMENT ON COLUMN runs.counts IS 'Per-phase counters (pulled, planned, applied, failed, ...) as a JSON object.';
COMMENT ON COLUMN runs.blocked_reason IS 'Why a safety check blocked the run (e.g. a listing shrank sharply), for the operator to judge.';
COMMENT ON COLUMN runs.approved_at IS 'When an operator approved a blocked or planned run.';
COMMENT ON COLUMN runs.approved_by IS 'Who approved it (free text from the CLI).';
COMMENT ON COLUMN runs.approved_run_id IS 'For an apply run: the planned run whose changes it pushes.';

CREATE TABLE changes (
    id                bigserial PRIMARY KEY,
    run_id            bigint NOT NULL REFERENCES runs (id),
    flow              text NOT NULL,
    target_system     text NOT NULL,
    operation         text NOT NULL CHECK (operation IN ('create_group', 'update_group', 'archive_group', 'delete_group', 'add_member', 'remove_member')),
    link_id           bigint,
    source_system     text,
    source_group_id   text,
    target_group_id   text,
    account_email     text,
    source_account_id text,
    target_account_id text,
    payload           jsonb,
    status            text NOT NULL DEFAULT 'planned' CHECK (status IN ('planned', 'in_flight', 'applied', 'failed', 'skipped', 'blocked')),
    reason            text,
    attempts          integer NOT NULL DEFAULT 0,
    last_error        text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    applied_at        timestamptz
);
CREATE INDEX changes_status_idx ON changes (status);
CREATE INDEX changes_run_id_idx ON changes (run_id);
CREATE INDEX changes_target_system_status_idx ON changes (target_system, status);
COMMENT ON TABLE changes IS 'One row per planned write to a target system. Nothing is pushed that was not planned here first.';
COMMENT ON COLUMN changes.link_id IS 'links.link_id of the mirror group the change is about; NULL for a create whose link is made when it is applied.';
COMMENT ON COLUMN changes.target_group_id IS 'Group id in the target; NULL for create_group until applied.';
COMMENT ON COLUMN changes.account_email IS 'Normalized email that matched the member across systems.';
COMMENT ON COLUMN changes.payload IS 'Operation input, e.g. the GroupSpec of a create or update.';
COMMENT ON COLUMN changes.status IS 'planned, in_flight (being written: an interrupted run checks the target before retrying), applied, failed, skipped (e.g. reason unsupported), blocked.';
COMMENT ON COLUMN changes.reason IS 'Why a change was skipped or blocked (unsupported, membership_managed, system_group, ...).';
COMMENT ON COLUMN changes.attempts IS 'Write attempts made so far.';
COMMENT ON COLUMN changes.last_error IS 'Error of the last failed attempt.';

CREATE TABLE leases (
    flow        text PRIMARY KEY,
    holder      text NOT NULL,
    term        bigint NOT NULL,
    acquired_at timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
COMMENT ON TABLE leases IS 'One row per flow: which replica runs it, so each flow runs once across replicas.';
COMMENT ON COLUMN leases.holder IS 'Identity of the replica holding the lease (host and process).';
COMMENT ON COLUMN leases.term IS 'Incremented on every change of holder, so a replica can tell its lease was taken over while it paused.';
COMMENT ON COLUMN leases.expires_at IS 'The lease is free after this unless renewed.';

CREATE VIEW sync_metadata AS
    SELECT system, 'group'::text AS record_kind, external_id AS record_key,
           origin_system, external_reference,
           last_sync_in_status, last_sync_in_date, last_sync_in_error,
           last_sync_out_status, last_sync_out_date, last_sync_out_error
      FROM groups
    UNION ALL
    SELECT system, 'membership'::text, group_id || '/' || account_id,
           origin_system, external_reference,
           last_sync_in_status, last_sync_in_date, last_sync_in_error,
           last_sync_out_status, last_sync_out_date, last_sync_out_error
      FROM memberships
    UNION ALL
    SELECT system, 'account'::text, external_id,
           origin_system, external_reference,
           last_sync_in_status, last_sync_in_date, last_sync_in_error,
           last_sync_out_status, last_sync_out_date, last_sync_out_error
      FROM accounts;
COMMENT ON VIEW sync_metadata IS 'One row per mirrored record with its sync metadata, shaped after DevRev''s sync_metadata. The data lives inline on groups, memberships and accounts (one write per record); this view is the place to filter it, e.g. WHERE last_sync_out_status = ''failed''.';
COMMENT ON COLUMN sync_metadata.record_kind IS 'group, membership or account.';
COMMENT ON COLUMN sync_metadata.record_key IS 'external_id for groups and accounts; group_id/account_id for memberships (join memberships on its columns when ids may contain a slash).';
