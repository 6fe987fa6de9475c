//! The dynamic-security command model, what the broker holds for each device (its mirror), and
//! the plan that takes one device from what the broker holds to what Sigil decided. Pure: no I/O.
//!
//! Each device Sigil trusts is a plugin *client* named by its device id (the certificate CN the
//! broker uses as username) with exactly one *role*, `sigil-device-<id>`, whose ACLs are the
//! topics the policy allows. A device Sigil does not trust has neither.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::MosquittoError;

/// Prefix of the role Sigil keeps for each device.
pub const ROLE_PREFIX: &str = "sigil-device-";
/// `textname` of clients Sigil manages, so an operator browsing the plugin can tell them apart.
pub const CLIENT_TEXTNAME: &str = "Sigil device";

/// The plugin's ACL types (Mosquitto 2.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum AclType {
    #[serde(rename = "publishClientSend")]
    PublishClientSend,
    #[serde(rename = "publishClientReceive")]
    PublishClientReceive,
    #[serde(rename = "subscribeLiteral")]
    SubscribeLiteral,
    #[serde(rename = "subscribePattern")]
    SubscribePattern,
    #[serde(rename = "unsubscribeLiteral")]
    UnsubscribeLiteral,
    #[serde(rename = "unsubscribePattern")]
    UnsubscribePattern,
}

/// One allowing ACL (Sigil's roles only allow; everything else falls to the default deny).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Acl {
    pub acl_type: AclType,
    pub topic: String,
}

impl Acl {
    pub fn new(acl_type: AclType, topic: impl Into<String>) -> Self {
        Self {
            acl_type,
            topic: topic.into(),
        }
    }
}

/// What a trusted device may do on the broker.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceGrant {
    pub acls: BTreeSet<Acl>,
}

/// What the broker holds for one device, as far as Sigil knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mirrored {
    /// Neither client nor role.
    Absent,
    /// Client and role, consistent, with these ACLs.
    Present(DeviceGrant),
    /// Something else (half-made, edited by hand, or a command whose outcome is unknown): the plan
    /// removes it and starts again.
    Unknown,
}

/// The role name for a device.
pub fn role_name(device: &str) -> String {
    format!("{ROLE_PREFIX}{device}")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AclSpec {
    pub acltype: AclType,
    pub topic: String,
    pub allow: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoleRef {
    pub rolename: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DefaultAccess {
    pub acltype: &'static str,
    pub allow: bool,
}

/// A command, serialised as the plugin reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "command")]
pub enum Command {
    #[serde(rename = "createRole")]
    CreateRole {
        rolename: String,
        textname: String,
        acls: Vec<AclSpec>,
    },
    #[serde(rename = "deleteRole")]
    DeleteRole { rolename: String },
    #[serde(rename = "addRoleACL")]
    AddRoleAcl {
        rolename: String,
        acltype: AclType,
        topic: String,
        allow: bool,
    },
    #[serde(rename = "removeRoleACL")]
    RemoveRoleAcl {
        rolename: String,
        acltype: AclType,
        topic: String,
    },
    #[serde(rename = "createClient")]
    CreateClient {
        username: String,
        textname: String,
        roles: Vec<RoleRef>,
    },
    #[serde(rename = "deleteClient")]
    DeleteClient { username: String },
    #[serde(rename = "listClients")]
    ListClients {
        verbose: bool,
        count: i64,
        offset: i64,
    },
    #[serde(rename = "listRoles")]
    ListRoles {
        verbose: bool,
        count: i64,
        offset: i64,
    },
    #[serde(rename = "setDefaultACLAccess")]
    SetDefaultAclAccess { acls: Vec<DefaultAccess> },
}

impl Command {
    /// The plugin's name for the command, as echoed in its response.
    pub fn name(&self) -> &'static str {
        match self {
            Self::CreateRole { .. } => "createRole",
            Self::DeleteRole { .. } => "deleteRole",
            Self::AddRoleAcl { .. } => "addRoleACL",
            Self::RemoveRoleAcl { .. } => "removeRoleACL",
            Self::CreateClient { .. } => "createClient",
            Self::DeleteClient { .. } => "deleteClient",
            Self::ListClients { .. } => "listClients",
            Self::ListRoles { .. } => "listRoles",
            Self::SetDefaultAclAccess { .. } => "setDefaultACLAccess",
        }
    }

    /// Whether `error` means the command's goal already holds (deleting what is not there).
    fn already_done(&self, error: &str) -> bool {
        matches!(
            (self, error),
            (Self::DeleteClient { .. }, "Client not found")
                | (Self::DeleteRole { .. }, "Role not found")
                | (Self::RemoveRoleAcl { .. }, "ACL not found")
        )
    }
}

/// Deny by default: a device publishes, subscribes and receives only where its role allows.
/// Receiving is checked too, not only subscribing: a subscription that reached a client some
/// other way (a persistent session another client left behind) must not deliver anything.
pub fn default_access() -> Command {
    Command::SetDefaultAclAccess {
        acls: vec![
            DefaultAccess {
                acltype: "publishClientSend",
                allow: false,
            },
            DefaultAccess {
                acltype: "publishClientReceive",
                allow: false,
            },
            DefaultAccess {
                acltype: "subscribe",
                allow: false,
            },
            DefaultAccess {
                acltype: "unsubscribe",
                allow: true,
            },
        ],
    }
}

/// The commands that take `device` from `actual` to `desired` (`None`: not trusted).
///
/// Removals come before additions, so a narrowing never passes through a wider state; an
/// untrusted device's client is deleted, which also disconnects it.
pub fn plan(device: &str, actual: &Mirrored, desired: Option<&DeviceGrant>) -> Vec<Command> {
    let rolename = role_name(device);
    let remove_all = || {
        vec![
            Command::DeleteClient {
                username: device.to_owned(),
            },
            Command::DeleteRole {
                rolename: rolename.clone(),
            },
        ]
    };
    let create = |grant: &DeviceGrant| {
        vec![
            Command::CreateRole {
                rolename: rolename.clone(),
                textname: format!("Sigil grants for device {device}"),
                acls: grant
                    .acls
                    .iter()
                    .map(|a| AclSpec {
                        acltype: a.acl_type,
                        topic: a.topic.clone(),
                        allow: true,
                    })
                    .collect(),
            },
            Command::CreateClient {
                username: device.to_owned(),
                textname: CLIENT_TEXTNAME.to_owned(),
                roles: vec![RoleRef {
                    rolename: rolename.clone(),
                }],
            },
        ]
    };
    match (actual, desired) {
        (Mirrored::Absent, None) => Vec::new(),
        (Mirrored::Absent, Some(grant)) => create(grant),
        (Mirrored::Present(_), None) | (Mirrored::Unknown, None) => remove_all(),
        (Mirrored::Unknown, Some(grant)) => {
            let mut commands = remove_all();
            commands.extend(create(grant));
            commands
        }
        (Mirrored::Present(have), Some(want)) => {
            let removals = have
                .acls
                .difference(&want.acls)
                .map(|a| Command::RemoveRoleAcl {
                    rolename: rolename.clone(),
                    acltype: a.acl_type,
                    topic: a.topic.clone(),
                });
            let additions = want
                .acls
                .difference(&have.acls)
                .map(|a| Command::AddRoleAcl {
                    rolename: rolename.clone(),
                    acltype: a.acl_type,
                    topic: a.topic.clone(),
                    allow: true,
                });
            removals.chain(additions).collect()
        }
    }
}

/// One entry of the plugin's answer.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Response {
    pub command: String,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub data: Option<Value>,
    #[serde(default, rename = "correlationData")]
    pub correlation_data: Option<String>,
}

#[derive(Deserialize)]
struct Responses {
    responses: Vec<Response>,
}

/// Parse a message from `$CONTROL/dynamic-security/v1/response`.
pub fn parse_responses(payload: &[u8]) -> Result<Vec<Response>, MosquittoError> {
    serde_json::from_slice::<Responses>(payload)
        .map(|r| r.responses)
        .map_err(|e| MosquittoError::Malformed(e.to_string()))
}

/// Check the plugin's answers against the commands sent, in order. Deleting something already
/// gone counts as done.
pub fn check(commands: &[Command], responses: &[Response]) -> Result<(), MosquittoError> {
    if commands.len() != responses.len() {
        return Err(MosquittoError::Malformed(format!(
            "{} commands sent, {} answers",
            commands.len(),
            responses.len()
        )));
    }
    for (command, response) in commands.iter().zip(responses) {
        if response.command != command.name() {
            return Err(MosquittoError::Malformed(format!(
                "answer for {} where {} was sent",
                response.command,
                command.name()
            )));
        }
        if let Some(error) = &response.error
            && !command.already_done(error)
        {
            return Err(MosquittoError::Refused {
                command: command.name().to_owned(),
                error: error.clone(),
            });
        }
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
struct ListedClient {
    username: String,
    #[serde(default)]
    textname: Option<String>,
    #[serde(default)]
    roles: Vec<ListedRoleRef>,
    #[serde(default)]
    groups: Vec<Value>,
}

#[derive(Debug, Deserialize)]
struct ListedRoleRef {
    rolename: String,
}

#[derive(Debug, Deserialize)]
struct ListedRole {
    rolename: String,
    #[serde(default)]
    acls: Vec<ListedAcl>,
}

#[derive(Debug, Deserialize)]
struct ListedAcl {
    acltype: AclType,
    topic: String,
    allow: bool,
}

/// A page of `listClients` (verbose) data: the clients and the total count.
pub fn listed_clients(data: &Value) -> Result<(Vec<Value>, i64), MosquittoError> {
    listed(data, "clients")
}

/// A page of `listRoles` (verbose) data: the roles and the total count.
pub fn listed_roles(data: &Value) -> Result<(Vec<Value>, i64), MosquittoError> {
    listed(data, "roles")
}

fn listed(data: &Value, key: &str) -> Result<(Vec<Value>, i64), MosquittoError> {
    let items = data
        .get(key)
        .and_then(Value::as_array)
        .ok_or_else(|| MosquittoError::Malformed(format!("listing has no `{key}` array")))?;
    let total = data
        .get("totalCount")
        .and_then(Value::as_i64)
        .ok_or_else(|| MosquittoError::Malformed("listing has no totalCount".into()))?;
    Ok((items.clone(), total))
}

fn parse_listed<T: serde::de::DeserializeOwned>(
    v: &Value,
    what: &str,
) -> Result<T, MosquittoError> {
    T::deserialize(v).map_err(|e| MosquittoError::Malformed(format!("{what}: {e}")))
}

/// What the broker holds for every device Sigil manages, read from the plugin's listings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerMirror {
    devices: BTreeMap<String, Mirrored>,
}

impl BrokerMirror {
    /// Build the mirror from full `listClients` and `listRoles` (verbose) listings. Clients and
    /// roles that are not Sigil's (the admin user, say) are left out and never touched.
    pub fn from_listings(clients: &[Value], roles: &[Value]) -> Result<Self, MosquittoError> {
        let mut our_roles: BTreeMap<String, Option<DeviceGrant>> = BTreeMap::new();
        for role in roles {
            let role: ListedRole = parse_listed(role, "role")?;
            let Some(device) = role.rolename.strip_prefix(ROLE_PREFIX) else {
                continue;
            };
            // A denying ACL is not something Sigil writes: treat the role as unknown.
            let grant = role.acls.iter().all(|a| a.allow).then(|| DeviceGrant {
                acls: role
                    .acls
                    .iter()
                    .map(|a| Acl::new(a.acltype, a.topic.clone()))
                    .collect(),
            });
            our_roles.insert(device.to_owned(), grant);
        }
        let mut devices = BTreeMap::new();
        let mut clients_seen = BTreeSet::new();
        for client in clients {
            let client: ListedClient = parse_listed(client, "client")?;
            let expected_role = role_name(&client.username);
            let ours = client.textname.as_deref() == Some(CLIENT_TEXTNAME)
                || client.roles.iter().any(|r| r.rolename == expected_role);
            if !ours {
                continue;
            }
            clients_seen.insert(client.username.clone());
            let consistent = client.groups.is_empty()
                && client.roles.len() == 1
                && client.roles[0].rolename == expected_role;
            let state = match our_roles.get(&client.username) {
                Some(Some(grant)) if consistent => Mirrored::Present(grant.clone()),
                _ => Mirrored::Unknown,
            };
            devices.insert(client.username, state);
        }
        // A role without its client is half-made.
        for device in our_roles.keys() {
            if !clients_seen.contains(device) {
                devices.insert(device.clone(), Mirrored::Unknown);
            }
        }
        Ok(Self { devices })
    }

    /// What the broker holds for `device`.
    pub fn get(&self, device: &str) -> Mirrored {
        self.devices
            .get(device)
            .cloned()
            .unwrap_or(Mirrored::Absent)
    }

    /// Record that the broker now holds `desired` for `device`.
    pub fn set(&mut self, device: &str, desired: Option<&DeviceGrant>) {
        match desired {
            Some(grant) => {
                self.devices
                    .insert(device.to_owned(), Mirrored::Present(grant.clone()));
            }
            None => {
                self.devices.remove(device);
            }
        }
    }

    /// Record that what the broker holds for `device` is no longer known.
    pub fn forget(&mut self, device: &str) {
        self.devices.insert(device.to_owned(), Mirrored::Unknown);
    }

    /// Every device the broker holds something for.
    pub fn devices(&self) -> impl Iterator<Item = &str> {
        self.devices.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.devices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// The plugin's behaviour for the commands Sigil sends, as observed on Mosquitto 2.0.11.
    #[derive(Debug, Default, Clone)]
    struct Plugin {
        clients: BTreeMap<String, Vec<String>>,
        roles: BTreeMap<String, BTreeSet<Acl>>,
    }

    impl Plugin {
        fn run(&mut self, command: &Command) -> Option<&'static str> {
            match command {
                Command::CreateRole { rolename, acls, .. } => {
                    if self.roles.contains_key(rolename) {
                        return Some("Role already exists");
                    }
                    let acls = acls
                        .iter()
                        .map(|a| Acl::new(a.acltype, a.topic.clone()))
                        .collect();
                    self.roles.insert(rolename.clone(), acls);
                }
                Command::DeleteRole { rolename } => {
                    self.roles.remove(rolename)?;
                }
                Command::AddRoleAcl {
                    rolename,
                    acltype,
                    topic,
                    ..
                } => {
                    let Some(role) = self.roles.get_mut(rolename) else {
                        return Some("Role not found");
                    };
                    if !role.insert(Acl::new(*acltype, topic.clone())) {
                        return Some("ACL with this topic already exists");
                    }
                }
                Command::RemoveRoleAcl {
                    rolename,
                    acltype,
                    topic,
                } => {
                    let Some(role) = self.roles.get_mut(rolename) else {
                        return Some("Role not found");
                    };
                    if !role.remove(&Acl::new(*acltype, topic.clone())) {
                        return Some("ACL not found");
                    }
                }
                Command::CreateClient {
                    username, roles, ..
                } => {
                    if self.clients.contains_key(username) {
                        return Some("Client already exists");
                    }
                    if roles.iter().any(|r| !self.roles.contains_key(&r.rolename)) {
                        return Some("Role not found");
                    }
                    let roles = roles.iter().map(|r| r.rolename.clone()).collect();
                    self.clients.insert(username.clone(), roles);
                }
                Command::DeleteClient { username } if self.clients.remove(username).is_none() => {
                    return Some("Client not found");
                }
                _ => {}
            }
            None
        }

        fn mirror(&self) -> BrokerMirror {
            let clients: Vec<Value> = self
                .clients
                .iter()
                .map(|(u, roles)| {
                    let roles: Vec<Value> = roles.iter().map(|r| json!({"rolename": r})).collect();
                    json!({"username": u, "textname": CLIENT_TEXTNAME, "roles": roles, "groups": []})
                })
                .collect();
            let roles: Vec<Value> = self
                .roles
                .iter()
                .map(|(r, acls)| {
                    let acls: Vec<Value> = acls
                        .iter()
                        .map(|a| json!({"acltype": a.acl_type, "topic": a.topic, "allow": true, "priority": -1}))
                        .collect();
                    json!({"rolename": r, "acls": acls})
                })
                .collect();
            BrokerMirror::from_listings(&clients, &roles).unwrap()
        }
    }

    fn acl() -> impl Strategy<Value = Acl> {
        (
            prop_oneof![
                Just(AclType::PublishClientSend),
                Just(AclType::SubscribePattern),
                Just(AclType::PublishClientReceive),
            ],
            prop_oneof![
                Just("devices/d/telemetry/#"),
                Just("devices/d/commands/#"),
                Just("other/#")
            ],
        )
            .prop_map(|(t, topic)| Acl::new(t, topic))
    }

    fn grant() -> impl Strategy<Value = Option<DeviceGrant>> {
        proptest::option::of(
            proptest::collection::btree_set(acl(), 0..4).prop_map(|acls| DeviceGrant { acls }),
        )
    }

    /// A starting broker: nothing, a consistent device, or half of one.
    fn start() -> impl Strategy<Value = Plugin> {
        (grant(), 0..3u8).prop_map(|(g, damage)| {
            let mut p = Plugin::default();
            if let Some(g) = g {
                for c in plan("d", &Mirrored::Absent, Some(&g)) {
                    p.run(&c);
                }
                match damage {
                    1 => {
                        p.clients.remove("d");
                    }
                    2 => {
                        p.roles.remove(&role_name("d"));
                        p.clients.insert("d".into(), vec![role_name("d")]);
                    }
                    _ => {}
                }
            }
            p
        })
    }

    proptest! {
        /// From any broker state, the plan's commands all succeed (or are harmless deletes of
        /// what is gone) and leave exactly the desired grant.
        #[test]
        fn plan_converges(mut plugin in start(), desired in grant()) {
            let actual = plugin.mirror().get("d");
            let commands = plan("d", &actual, desired.as_ref());
            let responses: Vec<Response> = commands.iter().map(|c| Response {
                command: c.name().into(),
                error: plugin.run(c).map(str::to_owned),
                data: None,
                correlation_data: None,
            }).collect();
            prop_assert!(check(&commands, &responses).is_ok(), "{commands:?} {responses:?}");
            let expected = match &desired {
                Some(g) => Mirrored::Present(g.clone()),
                None => Mirrored::Absent,
            };
            prop_assert_eq!(plugin.mirror().get("d"), expected);
            // Converged means nothing more to do.
            prop_assert!(plan("d", &plugin.mirror().get("d"), desired.as_ref()).is_empty());
        }

        #[test]
        fn responses_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_responses(&bytes);
        }
    }

    #[test]
    fn commands_serialise_as_the_plugin_expects() {
        let c = Command::AddRoleAcl {
            rolename: "r".into(),
            acltype: AclType::PublishClientSend,
            topic: "t/#".into(),
            allow: true,
        };
        assert_eq!(
            serde_json::to_value(&c).unwrap(),
            json!({"command": "addRoleACL", "rolename": "r", "acltype": "publishClientSend", "topic": "t/#", "allow": true})
        );
    }

    #[test]
    fn refusals_are_errors_but_deleting_what_is_gone_is_not() {
        let delete = Command::DeleteClient {
            username: "d".into(),
        };
        let gone = Response {
            command: "deleteClient".into(),
            error: Some("Client not found".into()),
            data: None,
            correlation_data: None,
        };
        assert!(check(std::slice::from_ref(&delete), std::slice::from_ref(&gone)).is_ok());
        let create = Command::CreateClient {
            username: "d".into(),
            textname: CLIENT_TEXTNAME.into(),
            roles: vec![],
        };
        let exists = Response {
            command: "createClient".into(),
            error: Some("Client already exists".into()),
            ..gone.clone()
        };
        assert!(matches!(
            check(&[create], &[exists]),
            Err(MosquittoError::Refused { .. })
        ));
        // Answers that do not line up with what was sent are malformed.
        assert!(matches!(
            check(&[delete], &[]),
            Err(MosquittoError::Malformed(_))
        ));
        assert!(parse_responses(br#"{"responses": 3}"#).is_err());
    }

    #[test]
    fn the_mirror_ignores_clients_that_are_not_sigils() {
        let clients = vec![
            json!({"username": "admin", "textname": "Dynsec admin user", "roles": [{"rolename": "admin"}], "groups": []}),
            json!({"username": "d1", "textname": CLIENT_TEXTNAME, "roles": [{"rolename": "sigil-device-d1"}], "groups": []}),
            // Edited by hand: an extra role makes it unknown (to be rebuilt).
            json!({"username": "d2", "textname": CLIENT_TEXTNAME, "roles": [{"rolename": "sigil-device-d2"}, {"rolename": "admin"}], "groups": []}),
        ];
        let roles = vec![
            json!({"rolename": "admin", "acls": [{"acltype": "subscribePattern", "topic": "#", "allow": true}]}),
            json!({"rolename": "sigil-device-d1", "acls": [{"acltype": "publishClientSend", "topic": "devices/d1/telemetry/#", "allow": true, "priority": -1}]}),
            json!({"rolename": "sigil-device-d2", "acls": []}),
            json!({"rolename": "sigil-device-d3", "acls": []}),
        ];
        let m = BrokerMirror::from_listings(&clients, &roles).unwrap();
        assert_eq!(m.devices().collect::<Vec<_>>(), ["d1", "d2", "d3"]);
        assert!(matches!(m.get("d1"), Mirrored::Present(g) if g.acls.len() == 1));
        assert_eq!(m.get("d2"), Mirrored::Unknown);
        assert_eq!(m.get("d3"), Mirrored::Unknown);
        assert_eq!(m.get("admin"), Mirrored::Absent);
    }
}
