-- One request budget per system, shared by every replica and flow that uses the system's
-- credentials: a token bucket refilled at `rate` per second up to `burst`. Clients take a
-- few tokens at a time in one short statement (never a transaction across an HTTP call),
-- and a server's rate-limit signal (429 Retry-After, a spent X-RateLimit window) pauses
-- every sharer until `paused_until`.
CREATE TABLE api_budgets (
    system       text PRIMARY KEY,
    rate         double precision NOT NULL CHECK (rate > 0),
    burst        double precision NOT NULL CHECK (burst >= 1),
    tokens       double precision NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    paused_until timestamptz
);
COMMENT ON TABLE api_budgets IS 'Shared API budget per configured system (token bucket): every replica and flow takes its requests from here, so together they keep to the system''s rate limit.';
COMMENT ON COLUMN api_budgets.rate IS 'Refill rate in requests/second: the system''s effective rate_limit, as the last client to take tokens configured it.';
COMMENT ON COLUMN api_budgets.burst IS 'Bucket size: the system''s effective burst.';
COMMENT ON COLUMN api_budgets.tokens IS 'Tokens left at updated_at (refill is computed on the next take, not by a timer).';
COMMENT ON COLUMN api_budgets.paused_until IS 'No tokens are granted before this time: set from a 429''s Retry-After or a spent rate-limit window''s reset, so every replica waits it out.';
