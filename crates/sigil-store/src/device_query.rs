//! The SQL of a device listing: filters, the search by prefix, a chosen set of ids, and an
//! order that pages by position ("after this device"), each answered from an index.

use sigil_domain::{DeviceFilter, DeviceSortKey};

use crate::rows::DEVICE_COLUMNS;
use crate::{Backend, MAX_PAGE};

/// Placeholders are numbered in the order values are bound ($1, $2, ...).
struct Sql {
    text: String,
    binds: Vec<String>,
}

impl Sql {
    fn bind(&mut self, value: String) -> String {
        self.binds.push(value);
        format!("${}", self.binds.len())
    }

    fn and(&mut self, clause: &str) {
        self.text.push_str(" AND ");
        self.text.push_str(clause);
    }
}

/// The query and its values; `None` when nothing can match (an empty id set).
pub(crate) fn listing(
    filter: &DeviceFilter,
    backend: Backend,
    tags_aggregate: &str,
) -> Option<(String, Vec<String>)> {
    let mut sql = Sql {
        text: format!(
            "SELECT {DEVICE_COLUMNS}, (SELECT {tags_aggregate} FROM device_tags t WHERE t.device_id = d.id) AS tags FROM devices d WHERE 1 = 1"
        ),
        binds: Vec::new(),
    };
    if let Some(state) = filter.state {
        let p = sql.bind(state.as_str().to_owned());
        sql.and(&format!("d.state = {p}"));
    }
    if let Some(product) = filter.product {
        let p = sql.bind(product.to_string());
        sql.and(&format!("d.product_id = {p}"));
    }
    if let Some(tag) = &filter.tag {
        let p = sql.bind(tag.as_str().to_owned());
        sql.and(&format!(
            "EXISTS (SELECT 1 FROM device_tags t2 WHERE t2.device_id = d.id AND t2.tag = {p})"
        ));
    }
    if let Some(site) = &filter.site {
        let p = sql.bind(site.clone());
        sql.and(&format!("d.site = {p}"));
    }
    // Byte (code point) order for serial numbers, whatever the database's collation: a prefix
    // is then one range of an index (migration 0020), and the order is the same on both.
    let binary = match backend {
        Backend::Postgres => " COLLATE \"C\"",
        Backend::Sqlite => "",
    };
    if let Some(search) = &filter.search {
        let mut terms = Vec::new();
        for column in ["d.serial_number", "d.hardware_id"] {
            let lower = sql.bind(search.prefix().to_owned());
            let upper = sql.bind(search.upper_bound());
            terms.push(format!(
                "({column}{binary} >= {lower} AND {column}{binary} < {upper})"
            ));
        }
        if let Some(id) = search.device_id() {
            let p = sql.bind(id.to_string());
            terms.push(format!("d.id = {p}"));
        }
        sql.and(&format!("({})", terms.join(" OR ")));
    }
    if let Some(ids) = &filter.ids {
        if ids.is_empty() {
            return None;
        }
        let list: Vec<String> = ids.iter().map(|id| sql.bind(id.to_string())).collect();
        sql.and(&format!("d.id IN ({})", list.join(", ")));
    }
    let key = match filter.sort.key {
        DeviceSortKey::Created => None,
        DeviceSortKey::Serial => Some(format!("serial_number{binary}")),
    };
    let (comparison, direction) = if filter.sort.descending {
        ("<", "DESC")
    } else {
        (">", "ASC")
    };
    if let Some(after) = filter.after {
        let p = sql.bind(after.to_string());
        match &key {
            None => sql.and(&format!("d.id {comparison} {p}")),
            // The position of the `after` device in the order: (key, id) compared as a row.
            Some(k) => sql.and(&format!(
                "(d.{k}, d.id) {comparison} (SELECT a.{k}, a.id FROM devices a WHERE a.id = {p})"
            )),
        }
    }
    let order = match &key {
        None => format!("d.id {direction}"),
        Some(k) => format!("d.{k} {direction}, d.id {direction}"),
    };
    let limit = filter.limit.clamp(1, MAX_PAGE);
    sql.text
        .push_str(&format!(" ORDER BY {order} LIMIT {limit}"));
    Some((sql.text, sql.binds))
}
