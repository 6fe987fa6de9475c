-- What the console asks of the inventory at fleet scale: devices of a site (a filter beside
-- state, product and tag), and the live certificates expiring soon (the overview's 7 / 30 /
-- 90-day counts), each answered from an index rather than a scan.
CREATE INDEX devices_site ON devices (site, id);
CREATE INDEX certificates_expiry ON certificates (not_after) WHERE status = 'active';
