//! Editing a device's descriptive fields (who owns it, where it is, its tags, its hardware id)
//! as an RFC 7396 JSON merge patch: a field left out is kept, `null` clears it, a value sets
//! it. Nothing else about a device is edited this way: its serial number and product identify
//! it, and its state and firmware change through their own audited operations.

use serde_json::Value;

use crate::inventory::{Device, InventoryError, MAX_TAGS, Tag, text};

/// A validated change. `None` keeps a field; `Some(None)` clears it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceChange {
    pub hardware_id: Option<Option<String>>,
    pub owner: Option<Option<String>>,
    pub site: Option<Option<String>>,
    /// The whole new set of tags (a merge patch replaces arrays).
    pub tags: Option<Vec<Tag>>,
}

impl DeviceChange {
    /// Read a merge-patch document, refusing any field it may not change.
    pub fn from_merge_patch(patch: &Value) -> Result<Self, InventoryError> {
        let Value::Object(fields) = patch else {
            return Err(InventoryError::WrongType {
                field: "patch",
                expected: "a JSON object",
            });
        };
        let mut change = Self::default();
        for (name, value) in fields {
            match name.as_str() {
                "hardware_id" => change.hardware_id = Some(optional("hardware_id", value, 256)?),
                "owner" => change.owner = Some(optional("owner", value, 200)?),
                "site" => change.site = Some(optional("site", value, 200)?),
                "tags" => change.tags = Some(tags(value)?),
                other => {
                    return Err(InventoryError::NotEditable(
                        other.chars().take(64).collect(),
                    ));
                }
            }
        }
        if change == Self::default() {
            return Err(InventoryError::NothingToChange);
        }
        Ok(change)
    }

    /// The device as it is after the change.
    pub fn applied_to(&self, device: &Device) -> Device {
        let mut after = device.clone();
        if let Some(v) = &self.hardware_id {
            after.hardware_id.clone_from(v);
        }
        if let Some(v) = &self.owner {
            after.owner.clone_from(v);
        }
        if let Some(v) = &self.site {
            after.site.clone_from(v);
        }
        if let Some(v) = &self.tags {
            after.tags.clone_from(v);
        }
        after
    }
}

fn optional(
    field: &'static str,
    value: &Value,
    max: usize,
) -> Result<Option<String>, InventoryError> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => text(field, s, max).map(Some),
        _ => Err(InventoryError::WrongType {
            field,
            expected: "a string, or null to clear it",
        }),
    }
}

fn tags(value: &Value) -> Result<Vec<Tag>, InventoryError> {
    let items = match value {
        Value::Null => return Ok(Vec::new()),
        Value::Array(items) => items,
        _ => {
            return Err(InventoryError::WrongType {
                field: "tags",
                expected: "an array of strings, or null to clear them",
            });
        }
    };
    if items.len() > MAX_TAGS {
        return Err(InventoryError::TooManyTags(items.len()));
    }
    let mut tags = items
        .iter()
        .map(|t| match t {
            Value::String(s) => Tag::parse(s),
            _ => Err(InventoryError::WrongType {
                field: "tags",
                expected: "an array of strings",
            }),
        })
        .collect::<Result<Vec<_>, _>>()?;
    tags.sort();
    tags.dedup();
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn a_merge_patch_sets_clears_and_keeps() {
        let change = DeviceChange::from_merge_patch(
            &json!({"owner": " Ops team ", "site": null, "tags": ["b", "a", "a"]}),
        )
        .unwrap();
        assert_eq!(change.owner, Some(Some("Ops team".to_owned())));
        assert_eq!(change.site, Some(None));
        assert_eq!(change.hardware_id, None);
        let tags: Vec<&str> = change
            .tags
            .as_ref()
            .unwrap()
            .iter()
            .map(Tag::as_str)
            .collect();
        assert_eq!(tags, ["a", "b"]);
    }

    #[test]
    fn only_descriptive_fields_are_edited() {
        for (patch, expected) in [
            (json!({"state": "active"}), "`state` cannot be edited"),
            (
                json!({"serial_number": "x"}),
                "`serial_number` cannot be edited",
            ),
            (json!({}), "the change is empty"),
            (json!([]), "must be a JSON object"),
            (json!({"owner": 3}), "`owner` must be a string"),
            (json!({"owner": ""}), "`owner` must not be empty"),
            (json!({"owner": "a\u{7}"}), "control character"),
            (json!({"tags": ["bad tag"]}), "tag `bad tag` is invalid"),
            (json!({"tags": "a"}), "`tags` must be an array"),
        ] {
            let e = DeviceChange::from_merge_patch(&patch)
                .unwrap_err()
                .to_string();
            assert!(e.contains(expected), "{patch}: {e}");
        }
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            "[a-z0-9 <>\"&._-]{0,40}".prop_map(Value::String),
            ".{0,300}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("owner".to_owned()),
                        Just("site".to_owned()),
                        Just("tags".to_owned()),
                        Just("hardware_id".to_owned()),
                        "[a-z_]{1,12}"
                    ],
                    inner,
                    0..5
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Any document either is refused or yields a change whose every value passes the
        /// rules a new device's fields pass.
        #[test]
        fn any_patch_is_refused_or_valid(patch in json_value()) {
            if let Ok(change) = DeviceChange::from_merge_patch(&patch) {
                prop_assert!(change != DeviceChange::default());
                for value in [&change.owner, &change.site, &change.hardware_id].into_iter().flatten().flatten() {
                    prop_assert!(!value.is_empty() && value.trim() == value);
                    prop_assert!(!value.chars().any(char::is_control));
                }
                if let Some(tags) = &change.tags {
                    prop_assert!(tags.len() <= MAX_TAGS);
                    prop_assert!(tags.windows(2).all(|w| w[0] < w[1]));
                }
            }
        }

        /// Valid patches are reached: a string owner is always taken, trimmed.
        #[test]
        fn a_plain_owner_is_taken(owner in "[a-zA-Z0-9][a-zA-Z0-9 ]{0,50}[a-zA-Z0-9]") {
            let change = DeviceChange::from_merge_patch(&json!({"owner": owner.clone()}));
            prop_assert_eq!(change.map(|c| c.owner), Ok(Some(Some(owner))));
        }
    }
}
