//! The OpenAPI document, generated from the handlers' annotations and then made to match what
//! the server really sends, in one place rather than in fifty annotations: every error is
//! `application/problem+json`; every guarded route documents 401, 403 and 429; every request
//! body 400, 413, 415 and 422; every path parameter is declared; routes that authenticate
//! otherwise (login, device mTLS) need no bearer token. Schemathesis checks the result against
//! the live server in the test suite.

use axum::http::Method;
use serde_json::json;
use utoipa::OpenApi;
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Required, ResponseBuilder};

use super::Problem;
#[cfg(test)]
use super::auth::Rule;
use super::auth::rule;

/// Routes that take no bearer token (they authenticate otherwise, or not at all).
pub const OPEN: [&str; 7] = [
    "/api/v1/auth/login",
    "/api/v1/device/assignment",
    "/api/v1/device/metrics",
    "/api/v1/device/posture",
    "/api/v1/device/update-channel",
    "/api/v1/device/update-reports",
    "/api/v1/openapi.json",
];

const PROBLEM: &str = "application/problem+json";

#[derive(OpenApi)]
#[openapi(
    info(title = "Sigil API", description = "IoT device identity and compliance platform"),
    paths(
        super::inventory::create_product, super::inventory::list_products, super::inventory::get_product,
        super::inventory::declare_product, super::inventory::get_declaration,
        super::inventory::create_device, super::inventory::list_devices, super::inventory::get_device, super::inventory::update_device,
        super::inventory::activate_device, super::inventory::suspend_device, super::inventory::resume_device, super::inventory::retire_device,
        super::certificates::issue, super::certificates::list, super::certificates::get, super::certificates::profiles, super::services::issue,
        super::foreign::import, super::foreign::list, super::foreign::remove,
        super::device_updates::device_updates,
        super::revocation::revoke_device, super::enrollment::create_enrollment_token, super::bootstrap::add, super::bootstrap::list, super::posture::get, super::broker::authn, super::broker::authz, super::broker::explain,
        super::policy::current, super::policy::versions, super::policy::apply, super::policy::rollback,
        super::operators::create_operator, super::operators::list_operators, super::operators::create_token, super::operators::list_tokens, super::operators::revoke_token,
        super::login::login, super::auth::logout, super::whoami::me, super::overview::inventory_summary, super::policy::version, super::compliance::report, super::import::import_devices, super::import::export_devices, super::overview::audit_status,
        super::compliance::frameworks, super::compliance::fleet, super::compliance::device, super::compliance::attest, super::compliance::attestations, super::compliance::evaluate_now, super::compliance::history,
        super::audit::entries, super::audit::latest_checkpoint, super::audit::sign_checkpoint, super::audit::inclusion,
        super::audit::consistency, super::audit::export, super::evidence::export,
        super::releases::upload_artefact, super::releases::create_release, super::releases::list_releases,
        super::releases::create_channel, super::releases::get_channel, super::releases::add_signatures, super::releases::device_channel, super::releases::rotate_keys,
        super::rollouts::create_rollout, super::rollouts::list_rollouts, super::rollouts::get_rollout, super::rollouts::act,
        super::rollouts::device_assignment, super::rollouts::device_report,
        super::vulns::import, super::vulns::upload_sbom, super::vulns::list_sboms, super::vulns::export_sbom, super::vulns::findings, super::vulns::import_vex, super::vulns::export_vex,
        super::cases::device_findings, super::cases::get_policy, super::cases::set_policy, super::cases::put_site, super::cases::list_sites,
        super::cases::list_cases, super::cases::open_case, super::cases::get_case, super::cases::draft, super::cases::record_report,
        super::disclosure::organisation_policy, super::disclosure::set_organisation_policy, super::disclosure::product_policy, super::disclosure::set_product_policy,
        super::disclosure::list_reports, super::disclosure::enter_report, super::disclosure::get_report, super::disclosure::acknowledge, super::disclosure::accept, super::disclosure::reject,
        super::monitoring::report, super::monitoring::status, super::monitoring::profiles, super::monitoring::apply_profiles,
        super::monitoring::list, super::monitoring::get, super::monitoring::decide, super::monitoring::quarantine,
        super::monitoring::release, super::monitoring::device,
    ),
    components(schemas(Problem)),
    modifiers(&BearerAuth, &Conformance),
    security(("bearer" = []), ("session" = [])),
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme,
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        // People: the session cookie from POST /api/v1/auth/login (changes also need the
        // X-Sigil-CSRF header).
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(
                super::auth::SESSION_COOKIE,
            ))),
        );
    }
}

/// The document as served: [`ApiDoc`] with the constraints the handlers enforce that the
/// derives cannot state (lengths, patterns, enumerations from the catalogue and the profiles),
/// so that a request the document calls valid is one the server accepts.
pub fn document() -> serde_json::Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    refine(&mut doc);
    doc
}

/// A release version: semantic versioning 2.0.0 (semver.org's own expression), or an integer
/// build number (the two schemes a product may declare).
const RELEASE_VERSION: &str = r"^(?:(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?|0|[1-9]\d{0,17})$";

/// Some character that is not a space, and no control characters (the text fields' rule).
const TEXT: &str = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$";

fn refine(doc: &mut serde_json::Value) {
    let catalogue = sigil_compliance::Catalogue::shipped().ok();
    let frameworks: Vec<String> = catalogue
        .as_ref()
        .map(|c| c.frameworks().iter().map(|f| f.info.id.clone()).collect())
        .unwrap_or_default();
    let schemas = &mut doc["components"]["schemas"];
    for (schema, property, constraint) in field_constraints(catalogue.as_ref()) {
        if let (Some(target), Some(extra)) = (
            schemas[schema]["properties"][property].as_object_mut(),
            constraint.as_object(),
        ) {
            target.extend(extra.clone());
        }
    }
    // An edit names at least one field.
    schemas["DevicePatch"]["minProperties"] = json!(1);
    schemas["DevicePatch"]["additionalProperties"] = json!(false);
    // Authorisation asks about an action on a topic; authentication needs neither.
    doc["paths"]["/api/v1/broker/emqx/authz"]["post"]["requestBody"]["content"]["application/json"]
        ["schema"] = json!({"allOf": [
        {"$ref": "#/components/schemas/BrokerRequest"},
        {"type": "object", "required": ["action", "topic"],
         "properties": {"action": {"enum": ["publish", "subscribe"]},
                        "topic": {"type": "string", "minLength": 1, "maxLength": 1024}}},
    ]});
    constrain_parameters(doc, &frameworks);
}

/// (schema, property, constraints) for the request fields whose rules the derives cannot state.
fn field_constraints(
    catalogue: Option<&sigil_compliance::Catalogue>,
) -> Vec<(&'static str, &'static str, serde_json::Value)> {
    let attestations: Vec<String> = catalogue
        .map(|c| {
            c.checks()
                .filter(|k| k.kind == sigil_compliance::CheckKind::Attestation)
                .map(|k| k.id.clone())
                .collect()
        })
        .unwrap_or_default();
    let profiles: Vec<&str> = sigil_ca::PROFILES.iter().map(|p| p.name).collect();
    let text = |max: usize| json!({"pattern": TEXT, "maxLength": max});
    vec![
        ("ProductRequest", "name", text(200)),
        ("ProductRequest", "manufacturer", text(200)),
        ("ProductRequest", "support_end", json!({"format": "date"})),
        ("DeviceRequest", "product_id", json!({"format": "uuid"})),
        ("DeviceRequest", "serial_number", text(128)),
        ("DeviceRequest", "hardware_id", text(256)),
        ("DeviceRequest", "owner", text(200)),
        ("DeviceRequest", "site", text(200)),
        ("DeviceRequest", "firmware_version", text(64)),
        (
            "DeviceRequest",
            "tags",
            json!({"maxItems": sigil_domain::MAX_TAGS,
            "items": {"type": "string", "pattern": "^[A-Za-z0-9._:/=-]{1,64}$"}}),
        ),
        ("DevicePatch", "hardware_id", text(256)),
        ("DevicePatch", "owner", text(200)),
        ("DevicePatch", "site", text(200)),
        (
            "DevicePatch",
            "tags",
            json!({"maxItems": sigil_domain::MAX_TAGS,
            "items": {"type": "string", "pattern": "^[A-Za-z0-9._:/=-]{1,64}$"}}),
        ),
        ("IssueRequest", "profile", json!({"enum": profiles})),
        (
            "EnrollmentTokenRequest",
            "ttl_seconds",
            json!({"minimum": 60, "maximum": 2_592_000}),
        ),
        (
            "CreateOperator",
            "username",
            json!({"pattern": "^[A-Za-z0-9._@-]{1,128}$"}),
        ),
        (
            "CreateOperator",
            "password",
            json!({"minLength": 12, "maxLength": 1024}),
        ),
        (
            "CreateOperator",
            "role",
            json!({"enum": super::auth::ROLES}),
        ),
        (
            "LoginRequest",
            "username",
            json!({"minLength": 1, "maxLength": 128}),
        ),
        ("LoginRequest", "password", json!({"maxLength": 1024})),
        ("CreateToken", "name", text(128)),
        ("CreateToken", "role", json!({"enum": super::auth::ROLES})),
        (
            "CreateToken",
            "scopes",
            json!({"minItems": 1, "items": {"type": "string", "enum": super::operators::SCOPES}}),
        ),
        (
            "CreateToken",
            "expires_in_seconds",
            json!({"minimum": 60, "maximum": 366 * 86_400}),
        ),
        (
            "ApplyRequest",
            "comment",
            json!({"pattern": r"\S", "maxLength": 1024}),
        ),
        ("RollbackRequest", "version", json!({"minimum": 0})),
        (
            "RollbackRequest",
            "comment",
            json!({"pattern": r"\S", "maxLength": 1024}),
        ),
        ("AttestRequest", "check", json!({"enum": attestations})),
        (
            "ReleaseRequest",
            "version",
            json!({"maxLength": 64, "pattern": RELEASE_VERSION}),
        ),
        (
            "ReleaseRequest",
            "artefact_sha256",
            json!({"pattern": "^[0-9a-f]{64}$"}),
        ),
        (
            "ReleaseRequest",
            "sbom_sha256",
            json!({"pattern": "^[0-9a-f]{64}$"}),
        ),
        (
            "ReleaseRequest",
            "file_name",
            json!({"pattern": r"^(?!\.\.?$)[A-Za-z0-9._+-]{1,100}$"}),
        ),
        (
            "ReleaseRequest",
            "notes",
            json!({"maxLength": 4000, "pattern": r"^[^\x00-\x09\x0b-\x1f\x7f-\x9f]*$"}),
        ),
        (
            "ChannelRequest",
            "version_scheme",
            json!({"enum": ["semver", "integer"]}),
        ),
        (
            "ChannelRequest",
            "root_threshold",
            json!({"minimum": 1, "maximum": 16}),
        ),
        (
            "ChannelRequest",
            "targets_threshold",
            json!({"minimum": 1, "maximum": 16}),
        ),
        (
            "SignatureItem",
            "role",
            json!({"enum": ["root", "targets"]}),
        ),
        (
            "RotationItem",
            "role",
            json!({"enum": ["root", "targets", "snapshot", "timestamp"]}),
        ),
        ("AttestRequest", "attested_by", text(200)),
        ("AttestRequest", "statement", text(4000)),
        ("AttestRequest", "document_name", text(200)),
        (
            "AttestRequest",
            "expires_at",
            json!({"format": "date-time"}),
        ),
        (
            "RevokeRequest",
            "reason",
            json!({"enum": ["keyCompromise", "affiliationChanged", "superseded",
            "cessationOfOperation", "privilegeWithdrawn", "unspecified", null]}),
        ),
        (
            "ServiceCertificateRequest",
            "validity_days",
            json!({"minimum": 1, "maximum": 398}),
        ),
    ]
}

/// Query and path parameters: what each one looks like.
fn constrain_parameters(doc: &mut serde_json::Value, frameworks: &[String]) {
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for op in item.values_mut() {
            let Some(params) = op["parameters"].as_array_mut() else {
                continue;
            };
            for param in params.iter_mut().filter(|p| p["in"] == "query") {
                if let Some(constraint) = query_constraint(path, param["name"].as_str(), frameworks)
                {
                    param["schema"] = constraint;
                }
            }
            for param in params.iter_mut().filter(|p| p["in"] == "path") {
                if let Some(constraint) = path_constraint(path, param["name"].as_str(), frameworks)
                {
                    param["schema"] = constraint;
                }
            }
        }
    }
}

fn query_constraint(
    path: &str,
    name: Option<&str>,
    frameworks: &[String],
) -> Option<serde_json::Value> {
    let uuid = matches!(
        path,
        "/api/v1/certificates"
            | "/api/v1/devices"
            | "/api/v1/devices/export"
            | "/api/v1/cases"
            | "/api/v1/alarms"
    );
    let devices = matches!(path, "/api/v1/devices" | "/api/v1/devices/export");
    Some(match name {
        // Printable, not only blanks (the text is trimmed).
        Some("q") if devices => json!({"type": "string", "maxLength": 256,
            "pattern": "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"}),
        Some("sort") if devices => json!({"type": "string", "enum": sigil_domain::DeviceSort::ALL}),
        Some("compliance") if devices => {
            let statuses = ["pass", "fail", "unknown", "not-applicable"];
            let mut values: Vec<String> = statuses.iter().map(|s| (*s).to_owned()).collect();
            for f in frameworks {
                values.extend(statuses.iter().map(|s| format!("{f}:{s}")));
            }
            json!({"type": "string", "enum": values})
        }
        Some("condition") => json!({"type": "string", "enum": ["active", "cleared"]}),
        Some("device" | "product" | "after" | "before") if uuid => {
            json!({"type": "string", "format": "uuid"})
        }
        Some("tag") if uuid => {
            json!({"type": "string", "pattern": "^[A-Za-z0-9._:/=-]{1,64}$"})
        }
        Some("order") => json!({"type": "string", "enum": ["asc", "desc"]}),
        Some("format") if path == "/api/v1/compliance/{framework}/report" => {
            json!({"type": "string", "enum": ["html", "csv", "json", "oscal", "oscal-component-definition"]})
        }
        Some("state") => json!({"type": "string", "enum":
                        ["registered", "provisioned", "active", "suspended", "retired"]}),
        Some("since" | "until") => json!({"type": "string", "format": "date-time"}),
        _ => return None,
    })
}

fn path_constraint(
    path: &str,
    name: Option<&str>,
    frameworks: &[String],
) -> Option<serde_json::Value> {
    Some(match name {
        Some("id") if path.starts_with("/api/v1/operators") => return None,
        Some("id") => json!({"type": "string", "format": "uuid"}),
        Some("serial") => {
            json!({"type": "string", "pattern": "^([0-9a-fA-F]{2}){1,20}$"})
        }
        Some("framework") => json!({"type": "string", "enum": frameworks}),
        Some("sha256") => json!({"type": "string", "pattern": "^[0-9a-fA-F]{64}$"}),
        _ => return None,
    })
}

struct Conformance;

fn problem(description: &str) -> RefOr<utoipa::openapi::Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                PROBLEM,
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            )
            .build(),
    )
}

fn conform(path: &str, method: &Method, op: &mut Operation) {
    declare_path_parameters(path, op);
    let responses = &mut op.responses.responses;
    for (code, response) in responses.iter_mut() {
        if (code.starts_with('4') || code.starts_with('5'))
            && let RefOr::T(r) = response
            && let Some(content) = r.content.shift_remove("application/json")
        {
            r.content.insert(PROBLEM.to_owned(), content);
        }
    }
    let mut add = |code: &str, description: &str| {
        responses
            .entry(code.to_owned())
            .or_insert_with(|| problem(description));
    };
    if OPEN.contains(&path) {
        op.security = Some(Vec::new());
    } else if rule(method, path).is_some() {
        add("401", "No valid credentials");
        add(
            "403",
            "The policy refuses this caller, or a CSRF header is missing",
        );
        add("429", "Too many failed authentications from this address");
    }
    if op.request_body.is_some() {
        add("400", "The body is not valid JSON");
        add("413", "The body is too large");
        add("415", "The body is not `application/json`");
        add("422", "A field is invalid");
    }
    if op
        .parameters
        .iter()
        .flatten()
        .any(|p| p.parameter_in == ParameterIn::Query)
    {
        add("400", "The query string is invalid");
        add("422", "A query parameter is out of range");
    }
    if path.contains('{') {
        add("400", "A path parameter is not a valid identifier");
        add("404", "No such resource");
    }
}

/// Every `{name}` of the path is a parameter, declared or not by the handler.
fn declare_path_parameters(path: &str, op: &mut Operation) {
    let params = op.parameters.get_or_insert_with(Vec::new);
    for name in path
        .split('/')
        .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
    {
        if !params
            .iter()
            .any(|p| p.name == name && p.parameter_in == ParameterIn::Path)
        {
            params.push(
                ParameterBuilder::new()
                    .name(name)
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True)
                    .schema(Some(
                        utoipa::openapi::ObjectBuilder::new()
                            .schema_type(utoipa::openapi::schema::Type::String),
                    ))
                    .build(),
            );
        }
    }
}

impl utoipa::Modify for Conformance {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            for (method, op) in [
                (Method::GET, &mut item.get),
                (Method::POST, &mut item.post),
                (Method::PUT, &mut item.put),
                (Method::PATCH, &mut item.patch),
                (Method::DELETE, &mut item.delete),
            ] {
                if let Some(op) = op {
                    conform(path, &method, op);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guarded(method: &Method, path: &str) -> bool {
        !OPEN.contains(&path)
            && matches!(
                rule(method, path),
                Some(Rule::Action(..) | Rule::Authenticated)
            )
    }

    #[test]
    fn the_document_matches_what_the_server_sends() {
        let doc = ApiDoc::openapi();
        let mut operations = 0;
        for (path, item) in &doc.paths.paths {
            for (method, op) in [
                (Method::GET, &item.get),
                (Method::POST, &item.post),
                (Method::PUT, &item.put),
                (Method::DELETE, &item.delete),
            ] {
                let Some(op) = op else { continue };
                operations += 1;
                let params = op.parameters.as_deref().unwrap_or_default();
                for name in path
                    .split('/')
                    .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
                {
                    assert!(
                        params.iter().any(|p| p.name == name),
                        "{method} {path}: {name} undeclared"
                    );
                }
                for (code, response) in &op.responses.responses {
                    if let RefOr::T(r) = response
                        && (code.starts_with('4') || code.starts_with('5'))
                    {
                        assert!(
                            !r.content.contains_key("application/json"),
                            "{method} {path} {code}: errors are problem+json"
                        );
                    }
                }
                if guarded(&method, path) {
                    for code in ["401", "403"] {
                        assert!(
                            op.responses.responses.contains_key(code),
                            "{method} {path} lacks {code}"
                        );
                    }
                }
                if op.request_body.is_some() {
                    assert!(
                        op.responses.responses.contains_key("415"),
                        "{method} {path}"
                    );
                }
            }
        }
        assert!(operations >= 50, "{operations}");
    }
}
