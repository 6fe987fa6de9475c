-- Facts the update checks read (device.update-timely). The days a device may run without a
-- security release once it is published, as the product's maker declares them (NULL: not
-- declared, and the check cannot decide).
ALTER TABLE product_declarations ADD COLUMN remediation_days BIGINT;

-- When a release was published: a signed targets document first listed it. The remediation
-- clock of a security release starts here, not at upload (its targets may be signed offline,
-- days later). Releases published before this column existed take their upload time.
ALTER TABLE releases ADD COLUMN published_at BIGINT;
UPDATE releases SET published_at = created_at WHERE state = 'published';
