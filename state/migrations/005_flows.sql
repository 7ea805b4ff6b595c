-- Flows as configured when they last ran: the views that pair a flow's source with its
-- targets read them here instead of inferring them from change rows (a flow already in step
-- at its first run has no change rows).

CREATE TABLE flows (
    name        text PRIMARY KEY,
    source      text NOT NULL,
    targets     text[] NOT NULL,
    schedule    text NOT NULL DEFAULT '',
    updated_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE flows IS 'Each flow as configured at its latest run: source system, target systems and schedule. Written by the engine at the start of every run (only when it changed).';
COMMENT ON COLUMN flows.targets IS 'The systems the flow pushes to, in configuration order.';

CREATE OR REPLACE VIEW flow_systems AS
    SELECT name AS flow, source AS source_system, t.target AS target_system
      FROM flows, unnest(targets) AS t(target)
    UNION
    SELECT DISTINCT flow, source_system, target_system
      FROM changes
     WHERE source_system IS NOT NULL;
COMMENT ON VIEW flow_systems IS 'Each flow''s source system and target systems: as configured at its latest run (flows), plus any pairing its change rows recorded before the flows table existed or before a target was removed from the flow.';
