-- Merges stage a listing into unlogged tables of their own in this schema, filled by short
-- COPYs while the listing runs, so that no transaction and no pooled connection is held
-- across an HTTP call. This registry names every such staging area, so that one left by a
-- process that died mid-merge can be found and dropped: a live merge touches its row every
-- minute, and a Begin drops the areas untouched for longer than a safe age.
CREATE TABLE merge_stages (
    name        text PRIMARY KEY,
    kind        text NOT NULL,
    system      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    touched_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE merge_stages IS 'Staging areas of merges in progress: tables <name>_stage and <name>_delta in this schema (unlogged, dropped at commit or rollback). A row untouched for 15 minutes belongs to a merge whose process died; the next merge drops its tables.';
COMMENT ON COLUMN merge_stages.touched_at IS 'Last heartbeat of the merge that owns the area (once a minute while it is open).';
