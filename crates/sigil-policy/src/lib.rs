//! Sigil's access policy, on Cedar: the schema (`policies/sigil.cedarschema`), the default
//! policies (`policies/default.cedar`), decisions that name the policies that made them, and
//! policy test suites (`policies/tests/*.json`).
//!
//! Pure: no I/O, no clock. Callers describe a request with [`Principal`], an action name and a
//! [`Target`]; this crate turns it into Cedar entities and asks the authorizer.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Decision as CedarDecision, Entities, Entity, EntityId, EntityTypeName,
    EntityUid, PolicyId, PolicySet, Request, Response, RestrictedExpression, Schema,
    ValidationMode, Validator,
};
use serde::{Deserialize, Serialize};

pub const SCHEMA: &str = include_str!("../policies/sigil.cedarschema");
pub const DEFAULT_POLICIES: &str = include_str!("../policies/default.cedar");

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("policy syntax: {0}")]
    Parse(String),
    #[error("policies do not validate against Sigil's schema:\n{}", .0.join("\n"))]
    Invalid(Vec<String>),
    #[error("every policy needs a unique @id(\"...\") annotation: {0}")]
    Id(String),
    #[error("request: {0}")]
    Request(String),
    #[error("schema: {0}")]
    Schema(String),
}

/// Who asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Principal {
    Device(DeviceFacts),
    Operator {
        id: String,
        roles: Vec<String>,
    },
    Token {
        id: String,
        roles: Vec<String>,
        scopes: Vec<String>,
    },
}

/// What Sigil knows about a device at the moment of the decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceFacts {
    pub id: String,
    #[serde(default = "unknown")]
    pub product: String,
    pub state: String,
    /// valid | expired | revoked | none
    pub certificate_status: String,
    #[serde(default = "unknown")]
    pub compliance: String,
    #[serde(default)]
    pub quarantined: bool,
}

fn unknown() -> String {
    "unknown".into()
}

/// What is asked about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Target {
    /// An MQTT topic (filter, for subscribe) as the broker names it.
    Topic(String),
    Broker(String),
    /// An API resource of this kind (`device`, `certificate`, `policy`, ...).
    Kind(String),
}

/// Context of an operator or token request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorContext {
    #[serde(default)]
    pub mfa: bool,
    #[serde(default)]
    pub source_ip: String,
}

/// An answer, with the policies that determined it (the permits that allowed it, or the
/// forbids that denied it; none when nothing permitted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub allowed: bool,
    pub reasons: Vec<String>,
    pub errors: Vec<String>,
}

/// `devices/<id>/<kind>/...` -> (owner, telemetry | commands | quarantine | other).
pub fn parse_topic(topic: &str) -> (Option<&str>, &'static str) {
    let mut parts = topic.split('/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("devices"), Some(owner), Some(kind))
            if !owner.is_empty() && owner != "+" && owner != "#" =>
        {
            let kind = match kind {
                "telemetry" => "telemetry",
                "commands" => "commands",
                "quarantine" => "quarantine",
                _ => "other",
            };
            (Some(owner), kind)
        }
        _ => (None, "other"),
    }
}

/// Entity type names, parsed once.
struct Types {
    device: EntityTypeName,
    product: EntityTypeName,
    operator: EntityTypeName,
    token: EntityTypeName,
    role: EntityTypeName,
    topic: EntityTypeName,
    broker: EntityTypeName,
    resource: EntityTypeName,
    action: EntityTypeName,
}

impl Types {
    fn new() -> Result<Self, PolicyError> {
        let t = |name: &str| {
            EntityTypeName::from_str(&format!("Sigil::{name}"))
                .map_err(|e| PolicyError::Schema(e.to_string()))
        };
        Ok(Self {
            device: t("Device")?,
            product: t("Product")?,
            operator: t("Operator")?,
            token: t("ApiToken")?,
            role: t("Role")?,
            topic: t("Topic")?,
            broker: t("Broker")?,
            resource: t("Resource")?,
            action: t("Action")?,
        })
    }

    fn uid(&self, kind: &EntityTypeName, id: &str) -> EntityUid {
        EntityUid::from_type_name_and_id(kind.clone(), EntityId::new(id))
    }
}

/// A loaded, validated policy set.
pub struct PolicyEngine {
    types: Types,
    schema: Schema,
    policies: PolicySet,
    authorizer: Authorizer,
    text: String,
}

impl PolicyEngine {
    /// Sigil's default policies.
    pub fn with_defaults() -> Result<Self, PolicyError> {
        Self::new(DEFAULT_POLICIES)
    }

    /// Parse `text`, name each policy by its `@id`, and validate it (strict) against the schema.
    pub fn new(text: &str) -> Result<Self, PolicyError> {
        let (schema, _warnings) =
            Schema::from_cedarschema_str(SCHEMA).map_err(|e| PolicyError::Schema(e.to_string()))?;
        let parsed = PolicySet::from_str(text).map_err(|e| PolicyError::Parse(format!("{e:?}")))?;
        let mut policies = PolicySet::new();
        let mut seen = HashSet::new();
        for p in parsed.policies() {
            let id = p
                .annotation("id")
                .ok_or_else(|| PolicyError::Id(format!("{} has none", p.id())))?
                .to_owned();
            if !seen.insert(id.clone()) {
                return Err(PolicyError::Id(format!("`{id}` is used twice")));
            }
            policies
                .add(p.new_id(PolicyId::new(id)))
                .map_err(|e| PolicyError::Parse(e.to_string()))?;
        }
        let result = Validator::new(schema.clone()).validate(&policies, ValidationMode::Strict);
        if !result.validation_passed() {
            return Err(PolicyError::Invalid(
                result.validation_errors().map(|e| e.to_string()).collect(),
            ));
        }
        Ok(Self {
            types: Types::new()?,
            schema,
            policies,
            authorizer: Authorizer::new(),
            text: text.to_owned(),
        })
    }

    /// The API actions of the schema: those an operator can be granted (what the device
    /// actions `connect`, `publish`, `subscribe` are not).
    pub fn operator_actions(&self) -> Vec<String> {
        let operator = &self.types.operator;
        let resource = &self.types.resource;
        let mut actions: Vec<String> = self
            .schema
            .actions_for_principal_and_resource(operator, resource)
            .map(|a| a.id().unescaped().to_owned())
            .collect();
        actions.sort();
        actions.dedup();
        actions
    }

    /// Every (action, resource kind) pair this policy allows `principal` in `context`, over the
    /// API actions and the resource `kinds` given. A policy error counts as not allowed, so the
    /// set never claims more than the engine would grant.
    pub fn rights(
        &self,
        principal: &Principal,
        context: &OperatorContext,
        kinds: &[&str],
    ) -> std::collections::BTreeSet<(String, String)> {
        let mut rights = std::collections::BTreeSet::new();
        for action in self.operator_actions() {
            for kind in kinds {
                let target = Target::Kind((*kind).to_owned());
                if self
                    .decide(principal, &action, &target, context)
                    .is_ok_and(|d| d.allowed)
                {
                    rights.insert((action.clone(), (*kind).to_owned()));
                }
            }
        }
        rights
    }

    /// The policy text in force.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The `@id` of every policy, sorted.
    pub fn policy_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .policies
            .policies()
            .map(|p| p.id().to_string())
            .collect();
        ids.sort();
        ids
    }

    pub fn policy_count(&self) -> usize {
        self.policies.policies().count()
    }

    /// Decide whether `principal` may do `action` on `target`.
    pub fn decide(
        &self,
        principal: &Principal,
        action: &str,
        target: &Target,
        context: &OperatorContext,
    ) -> Result<Decision, PolicyError> {
        let t = &self.types;
        let mut entities: Vec<Entity> = Vec::with_capacity(4);
        let principal_uid = t.principal(principal, &mut entities)?;
        let resource_uid = t.resource(target, &mut entities)?;
        let action_uid = t.uid(&t.action, action);
        let context = request_context(principal, context)?;
        // Validated against the schema, so a misspelt action or a wrong principal type is an
        // error, not a silent deny.
        let request = Request::new(
            principal_uid,
            action_uid,
            resource_uid,
            context,
            Some(&self.schema),
        )
        .map_err(|e| bad(&e))?;
        // A topic's owner may be another device: referenced, not described.
        let entities = Entities::from_entities(entities, None).map_err(|e| bad(&e))?;
        let response = self
            .authorizer
            .is_authorized(&request, &self.policies, &entities);
        Ok(decision(&response))
    }
}

/// A request that Cedar refuses to build.
fn bad(e: &dyn std::fmt::Display) -> PolicyError {
    PolicyError::Request(e.to_string())
}

fn str_attr(v: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(v.to_owned())
}

/// The request's parties as Cedar entities: each method appends the entities it describes to
/// `entities` and returns the uid of the one asked for.
impl Types {
    fn principal(
        &self,
        principal: &Principal,
        entities: &mut Vec<Entity>,
    ) -> Result<EntityUid, PolicyError> {
        match principal {
            Principal::Device(d) => self.device_entity(d, entities),
            Principal::Operator { id, roles } => {
                self.role_holder(&self.operator, id, roles, None, entities)
            }
            Principal::Token { id, roles, scopes } => {
                self.role_holder(&self.token, id, roles, Some(scopes), entities)
            }
        }
    }

    /// A device, with its product.
    fn device_entity(
        &self,
        d: &DeviceFacts,
        entities: &mut Vec<Entity>,
    ) -> Result<EntityUid, PolicyError> {
        let uid = self.uid(&self.device, &d.id);
        let product = self.uid(&self.product, &d.product);
        let attrs = HashMap::from([
            (
                "product".to_owned(),
                RestrictedExpression::new_entity_uid(product.clone()),
            ),
            ("state".to_owned(), str_attr(&d.state)),
            (
                "certificate_status".to_owned(),
                str_attr(&d.certificate_status),
            ),
            ("compliance".to_owned(), str_attr(&d.compliance)),
            (
                "quarantined".to_owned(),
                RestrictedExpression::new_bool(d.quarantined),
            ),
        ]);
        entities.push(Entity::new(uid.clone(), attrs, HashSet::new()).map_err(|e| bad(&e))?);
        entities.push(Entity::new_no_attrs(product, HashSet::new()));
        Ok(uid)
    }

    /// An operator or an API token (of type `kind`; a token has `scopes`), with its roles.
    fn role_holder(
        &self,
        kind: &EntityTypeName,
        id: &str,
        roles: &[String],
        scopes: Option<&[String]>,
        entities: &mut Vec<Entity>,
    ) -> Result<EntityUid, PolicyError> {
        let uid = self.uid(kind, id);
        let parents: HashSet<EntityUid> = roles.iter().map(|r| self.uid(&self.role, r)).collect();
        let mut attrs = HashMap::from([("name".to_owned(), str_attr(id))]);
        if let Some(scopes) = scopes {
            attrs.insert(
                "scopes".to_owned(),
                RestrictedExpression::new_set(scopes.iter().map(|s| str_attr(s))),
            );
        }
        entities.push(Entity::new(uid.clone(), attrs, parents.clone()).map_err(|e| bad(&e))?);
        entities.extend(
            parents
                .into_iter()
                .map(|r| Entity::new_no_attrs(r, HashSet::new())),
        );
        Ok(uid)
    }

    fn resource(
        &self,
        target: &Target,
        entities: &mut Vec<Entity>,
    ) -> Result<EntityUid, PolicyError> {
        match target {
            Target::Topic(name) => {
                let (owner, kind) = parse_topic(name);
                let uid = self.uid(&self.topic, name);
                let mut attrs = HashMap::from([
                    ("name".to_owned(), str_attr(name)),
                    ("kind".to_owned(), str_attr(kind)),
                ]);
                if let Some(owner) = owner {
                    attrs.insert(
                        "owner".to_owned(),
                        RestrictedExpression::new_entity_uid(self.uid(&self.device, owner)),
                    );
                }
                entities
                    .push(Entity::new(uid.clone(), attrs, HashSet::new()).map_err(|e| bad(&e))?);
                Ok(uid)
            }
            Target::Broker(name) => {
                let uid = self.uid(&self.broker, name);
                entities.push(Entity::new_no_attrs(uid.clone(), HashSet::new()));
                Ok(uid)
            }
            Target::Kind(kind) => {
                let uid = self.uid(&self.resource, kind);
                let attrs = HashMap::from([("kind".to_owned(), str_attr(kind))]);
                entities
                    .push(Entity::new(uid.clone(), attrs, HashSet::new()).map_err(|e| bad(&e))?);
                Ok(uid)
            }
        }
    }
}

/// The request context: empty for a device; an operator's or token's second factor and address.
fn request_context(
    principal: &Principal,
    context: &OperatorContext,
) -> Result<Context, PolicyError> {
    match principal {
        Principal::Device(_) => Ok(Context::empty()),
        _ => Context::from_pairs([
            (
                "mfa".to_owned(),
                RestrictedExpression::new_bool(context.mfa),
            ),
            ("source_ip".to_owned(), str_attr(&context.source_ip)),
        ])
        .map_err(|e| bad(&e)),
    }
}

/// Cedar's answer as a [`Decision`], its reasons (policy ids) sorted.
fn decision(response: &Response) -> Decision {
    let mut reasons: Vec<String> = response
        .diagnostics()
        .reason()
        .map(ToString::to_string)
        .collect();
    reasons.sort();
    Decision {
        allowed: response.decision() == CedarDecision::Allow,
        reasons,
        errors: response
            .diagnostics()
            .errors()
            .map(ToString::to_string)
            .collect(),
    }
}

/// One case of a policy test suite.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestCase {
    pub name: String,
    pub principal: Principal,
    pub action: String,
    pub resource: Target,
    #[serde(default)]
    pub context: OperatorContext,
    /// `allow` or `deny`.
    pub expect: String,
    /// If given, the policies that must have determined the decision.
    #[serde(default)]
    pub reasons: Option<Vec<String>>,
}

/// Parse a suite: a JSON array of [`TestCase`]s.
pub fn parse_suite(text: &str) -> Result<Vec<TestCase>, PolicyError> {
    serde_json::from_str(text).map_err(|e| PolicyError::Request(format!("test suite: {e}")))
}

/// The suites for the default policies, shipped with Sigil.
pub const DEFAULT_SUITES: &[(&str, &str)] = &[
    (
        "devices.json",
        include_str!("../policies/tests/devices.json"),
    ),
    (
        "operators.json",
        include_str!("../policies/tests/operators.json"),
    ),
    ("tokens.json", include_str!("../policies/tests/tokens.json")),
];

/// The outcome of one case: `None` if it passed, else why not.
pub fn run_case(engine: &PolicyEngine, case: &TestCase) -> Option<String> {
    let want = match case.expect.as_str() {
        "allow" => true,
        "deny" => false,
        other => return Some(format!("expect must be allow or deny, not `{other}`")),
    };
    match engine.decide(&case.principal, &case.action, &case.resource, &case.context) {
        Err(e) => Some(e.to_string()),
        Ok(d) if !d.errors.is_empty() => Some(format!("evaluation errors: {:?}", d.errors)),
        Ok(d) if d.allowed != want => Some(format!(
            "expected {}, got {} (by {:?})",
            case.expect,
            if d.allowed { "allow" } else { "deny" },
            d.reasons
        )),
        Ok(d) => match &case.reasons {
            Some(r) if *r != d.reasons => {
                Some(format!("expected reasons {r:?}, got {:?}", d.reasons))
            }
            _ => None,
        },
    }
}

#[cfg(test)]
mod rights_tests {
    use super::*;

    fn operator(role: &str) -> Principal {
        Principal::Operator {
            id: "o".into(),
            roles: vec![role.into()],
        }
    }

    #[test]
    fn rights_follow_the_roles() {
        let engine = PolicyEngine::with_defaults().expect("defaults");
        assert!(
            engine
                .operator_actions()
                .contains(&"operator.manage".to_owned())
        );
        assert!(!engine.operator_actions().contains(&"publish".to_owned()));
        let mfa = OperatorContext {
            mfa: true,
            source_ip: String::new(),
        };
        let kinds = ["device", "policy", "operator"];
        let admin = engine.rights(&operator("admin"), &mfa, &kinds);
        let officer = engine.rights(&operator("security-officer"), &mfa, &kinds);
        let auditor = engine.rights(&operator("auditor"), &mfa, &kinds);
        assert!(officer.is_subset(&admin) && auditor.is_subset(&officer));
        assert!(!officer.contains(&("operator.manage".into(), "operator".into())));
        // Without the second factor, trust changes are gone.
        let no_mfa = engine.rights(&operator("admin"), &OperatorContext::default(), &kinds);
        assert!(!no_mfa.contains(&("policy.apply".into(), "policy".into())));
        assert!(no_mfa.is_subset(&admin));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(id: &str, state: &str) -> Principal {
        Principal::Device(DeviceFacts {
            id: id.into(),
            product: "p".into(),
            state: state.into(),
            certificate_status: "valid".into(),
            compliance: "compliant".into(),
            quarantined: false,
        })
    }

    #[test]
    fn the_default_policies_validate_and_explain_themselves() {
        let e = PolicyEngine::with_defaults().unwrap();
        let d = e
            .decide(
                &device("d1", "active"),
                "publish",
                &Target::Topic("devices/d1/telemetry/t".into()),
                &OperatorContext::default(),
            )
            .unwrap();
        assert!(d.allowed, "{d:?}");
        assert_eq!(d.reasons, ["device-publish-own-telemetry"]);
        let d = e
            .decide(
                &device("d1", "suspended"),
                "publish",
                &Target::Topic("devices/d1/telemetry/t".into()),
                &OperatorContext::default(),
            )
            .unwrap();
        assert!(!d.allowed);
        assert_eq!(d.reasons, ["device-untrusted-state"]);
        let d = e
            .decide(
                &device("d1", "active"),
                "publish",
                &Target::Topic("devices/d2/telemetry/t".into()),
                &OperatorContext::default(),
            )
            .unwrap();
        assert!(!d.allowed && d.reasons.is_empty(), "{d:?}");
    }

    #[test]
    fn bad_policies_are_refused_with_the_reason() {
        let e = PolicyEngine::new("permit(principal, action, resource);")
            .err()
            .unwrap();
        assert!(e.to_string().contains("@id"), "{e}");
        let e = PolicyEngine::new(r#"@id("x") permit(principal is Sigil::Device, action == Sigil::Action::"publish", resource is Sigil::Topic) when { principal.colour == "red" };"#).err().unwrap();
        assert!(matches!(e, PolicyError::Invalid(_)), "{e}");
        let e = PolicyEngine::new("permit(").err().unwrap();
        assert!(matches!(e, PolicyError::Parse(_)), "{e}");
    }

    #[test]
    fn the_shipped_suites_pass_against_the_default_policies() {
        let e = PolicyEngine::with_defaults().unwrap();
        let mut n = 0;
        for (file, text) in DEFAULT_SUITES {
            for case in parse_suite(text).unwrap() {
                n += 1;
                assert_eq!(run_case(&e, &case), None, "{file}: {}", case.name);
            }
        }
        assert!(n >= 50, "{n} cases");
    }

    #[test]
    fn a_suite_catches_a_policy_that_grants_too_much() {
        // An extra permit that lets any device publish anywhere breaks the device suite.
        let loose = format!(
            "{DEFAULT_POLICIES}\n@id(\"oops\") permit(principal is Sigil::Device, action == Sigil::Action::\"publish\", resource);"
        );
        let e = PolicyEngine::new(&loose).unwrap();
        let failures: Vec<String> = parse_suite(DEFAULT_SUITES[0].1)
            .unwrap()
            .iter()
            .filter_map(|c| run_case(&e, c).map(|why| format!("{}: {why}", c.name)))
            .collect();
        assert!(
            failures
                .iter()
                .any(|f| f.contains("another device's telemetry")),
            "{failures:?}"
        );
    }

    #[test]
    fn topics_name_their_owner_and_kind() {
        assert_eq!(
            parse_topic("devices/a/telemetry/x"),
            (Some("a"), "telemetry")
        );
        assert_eq!(parse_topic("devices/a/commands/#"), (Some("a"), "commands"));
        assert_eq!(parse_topic("devices/+/commands/#"), (None, "other"));
        assert_eq!(parse_topic("other/a/telemetry"), (None, "other"));
        assert_eq!(parse_topic(""), (None, "other"));
    }
}
