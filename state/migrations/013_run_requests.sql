-- `groupsync trigger FLOW` asks a running daemon (any replica) to run a flow now. The
-- request is a row, not an HTTP endpoint: nothing unauthenticated can start a run, it
-- works behind PgBouncer (no LISTEN), and whichever replica polls first claims it.
CREATE TABLE run_requests (
    id            bigserial PRIMARY KEY,
    flow          text NOT NULL,
    requested_by  text NOT NULL,
    requested_at  timestamptz NOT NULL DEFAULT now(),
    claimed_by    text,
    claimed_at    timestamptz,
    run_id        bigint REFERENCES runs (id),
    outcome       text
);
CREATE INDEX run_requests_pending_idx ON run_requests (flow, id) WHERE run_id IS NULL;
COMMENT ON TABLE run_requests IS 'Requests to run a flow now (groupsync trigger), claimed by the first daemon replica that polls. Pending requests of one flow are served by one run.';
COMMENT ON COLUMN run_requests.requested_by IS 'Who asked: the OS user of the groupsync trigger command (or --by).';
COMMENT ON COLUMN run_requests.claimed_by IS 'The replica (lease holder id) that claimed the request; a claim without a run after 10 minutes is given up and the request claimed again.';
COMMENT ON COLUMN run_requests.run_id IS 'The run that served the request; NULL while pending.';
COMMENT ON COLUMN run_requests.outcome IS 'Why a claimed request has no run (for instance: the flow is unknown to the daemon).';
