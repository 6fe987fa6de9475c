-- Findings look records up by package name alone (an SBOM component's purl gives the
-- package; the ecosystem is matched afterwards, with its release): the primary key starts
-- with the ecosystem and cannot serve that lookup.
CREATE INDEX vuln_packages_package ON vuln_packages (package, record_id);
