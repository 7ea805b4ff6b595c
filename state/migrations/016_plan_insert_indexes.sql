-- Every run writes one change row per planned write (100k rows for a 100k-member sync),
-- and each index on changes is paid once per row. changes_status_idx (status alone, a
-- handful of values) is no way in for the engine, whose queries all name a run or a flow
-- (changes_run_id_idx, changes_in_flight_idx, changes_intent_attempted_idx). The one reader
-- that filters on status alone is the recent_failures view (failed in the last 7 days):
-- a partial index on the failed rows serves it better, and planned rows never enter it.
DROP INDEX IF EXISTS changes_status_idx;
CREATE INDEX changes_failed_idx ON changes (updated_at) WHERE status = 'failed';
