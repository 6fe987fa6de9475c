-- When each device's last behaviour metrics report reached the detector (unix seconds): the
-- compliance check device.metrics-fresh reads it. Written in batches by the detector.
ALTER TABLE devices ADD COLUMN metrics_at INTEGER;
-- The compliance check org.alarms-decided reads the active critical alarms with no decision.
CREATE INDEX alarms_undecided_critical ON alarms (raised_at_ms) WHERE active = 1 AND decision IS NULL AND severity = 'critical' AND suppressed = 0;
