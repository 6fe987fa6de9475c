//! Devices from the spreadsheet a team keeps today: a CSV file with a header row, one device
//! per row. Every row is checked before anything is written, and every problem is reported with
//! its line and column, so the file can be fixed in one pass; the import then writes all of it
//! or none (the caller's transaction).
//!
//! The `csv` crate reads the file (quoting, embedded newlines, CRLF); what a column means and
//! which values are allowed is decided here, by the same rules as a device created alone.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::ids::ProductId;
use crate::inventory::{DeviceFields, NewDevice};

/// The columns a file may have. `product` (an id or a product's exact name) and
/// `serial_number` are required; the others may be left out or empty.
pub const COLUMNS: [&str; 7] = [
    "product",
    "serial_number",
    "hardware_id",
    "owner",
    "site",
    "tags",
    "firmware_version",
];
/// Columns an export writes that an import reads past (so an exported file imports again).
pub const EXPORT_ONLY: [&str; 4] = ["id", "state", "created_at", "updated_at"];
/// Rows in one file (a larger fleet imports in several files).
pub const MAX_ROWS: usize = 100_000;
/// Problems reported before the rest are summarised.
pub const MAX_REPORTED: usize = 1_000;

/// A problem with one row (or with the file, line 1 for its header).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowError {
    /// The line in the file, from 1 (the header is line 1).
    pub line: u64,
    pub column: Option<String>,
    pub message: String,
}

/// A row that passed every check, with the line it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRow {
    pub line: u64,
    pub device: NewDevice,
}

/// What a file holds: the devices it would create, or every problem found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedImport {
    pub rows: Vec<ImportRow>,
    pub errors: Vec<RowError>,
    /// Problems beyond [`MAX_REPORTED`], counted but not listed.
    pub unreported: usize,
}

impl ParsedImport {
    fn fail(&mut self, line: u64, column: Option<&str>, message: impl Into<String>) {
        if self.errors.len() < MAX_REPORTED {
            self.errors.push(RowError {
                line,
                column: column.map(str::to_owned),
                message: message.into(),
            });
        } else {
            self.unreported += 1;
        }
    }

    pub fn is_clean(&self) -> bool {
        self.errors.is_empty() && self.unreported == 0
    }
}

/// Read a device CSV. `product` resolves a product column's value (an id or an exact name) to
/// a product. Duplicates within the file are problems too; duplicates of devices already
/// registered are for the caller to find (it has the database).
pub fn parse_devices(bytes: &[u8], product: impl Fn(&str) -> Option<ProductId>) -> ParsedImport {
    let mut out = ParsedImport::default();
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(bytes);
    let columns = match header(&mut reader) {
        Ok(columns) => columns,
        Err(message) => {
            out.fail(1, None, message);
            return out;
        }
    };
    let mut serials: HashMap<(ProductId, String), u64> = HashMap::new();
    let mut hardware: HashMap<String, u64> = HashMap::new();
    // csv counts records, not lines; a person fixing the sheet wants the line (a quoted value
    // may span several), so it is counted here from the record's byte offset.
    let newlines: Vec<usize> = bytes
        .iter()
        .enumerate()
        .filter_map(|(i, b)| (*b == b'\n').then_some(i))
        .collect();
    // A record's position is where the previous one ended: its line starts after the line
    // ends (and any blank lines, which csv skips) that follow.
    let line_at = |offset: u64| {
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        let skipped = bytes[start..]
            .iter()
            .take_while(|b| matches!(b, b'\r' | b'\n'))
            .count();
        let start = start + skipped;
        newlines.partition_point(|&i| i < start) as u64 + 1
    };
    let mut record = csv::StringRecord::new();
    loop {
        let line = line_at(reader.position().byte());
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                out.fail(line.max(2), None, csv_problem(&e));
                // A malformed record leaves the reader's position unreliable: stop here.
                return out;
            }
        }
        let line = record.position().map_or(line, |p| line_at(p.byte()));
        if out.rows.len() + out.errors.len() >= MAX_ROWS {
            out.fail(
                line,
                None,
                format!("more than {MAX_ROWS} rows: split the file"),
            );
            return out;
        }
        if record.iter().all(|v| v.trim().is_empty()) {
            continue;
        }
        let device = match read_row(&record, &columns, &product) {
            Ok(device) => device,
            Err((column, message)) => {
                out.fail(line, column, message);
                continue;
            }
        };
        if let Some(first) = serials.insert((device.product_id, device.serial_number.clone()), line)
        {
            out.fail(
                line,
                Some("serial_number"),
                format!(
                    "serial number `{}` of this product is also on line {first}",
                    shorten(&device.serial_number)
                ),
            );
            continue;
        }
        if let Some(hw) = &device.hardware_id
            && let Some(first) = hardware.insert(hw.clone(), line)
        {
            out.fail(
                line,
                Some("hardware_id"),
                format!("hardware id `{}` is also on line {first}", shorten(hw)),
            );
            continue;
        }
        out.rows.push(ImportRow { line, device });
    }
    if out.rows.is_empty() && out.is_clean() {
        out.fail(1, None, "the file has a header but no devices");
    }
    out
}

/// One row as a device, or the column at fault and why.
fn read_row(
    record: &csv::StringRecord,
    columns: &HashMap<String, usize>,
    product: &impl Fn(&str) -> Option<ProductId>,
) -> Result<NewDevice, (Option<&'static str>, String)> {
    let cell = |name: &str| {
        columns
            .get(name)
            .and_then(|&i| record.get(i))
            .map(|v| unquote_formula(v.trim()).into_owned())
            .filter(|v| !v.is_empty())
    };
    let product_value = cell("product").ok_or((
        Some("product"),
        "empty: name the product by id or exact name".to_owned(),
    ))?;
    let product_id = product(&product_value).ok_or_else(|| {
        (
            Some("product"),
            format!(
                "no product `{}` (by id or exact name)",
                shorten(&product_value)
            ),
        )
    })?;
    let tags: Vec<String> = cell("tags")
        .map(|t| {
            t.split([';', ' ', ','])
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let (serial, hardware, owner, site, firmware) = (
        cell("serial_number").unwrap_or_default(),
        cell("hardware_id"),
        cell("owner"),
        cell("site"),
        cell("firmware_version"),
    );
    let fields = DeviceFields {
        serial_number: &serial,
        hardware_id: hardware.as_deref(),
        owner: owner.as_deref(),
        site: site.as_deref(),
        tags: &tags,
        firmware_version: firmware.as_deref(),
    };
    NewDevice::parse(product_id, fields).map_err(|e| (column_of(&e.to_string()), e.to_string()))
}

/// The header's columns by name; unknown or repeated columns and missing required ones are
/// refused (a misspelt `serial_numbr` would otherwise import devices without it).
fn header(reader: &mut csv::Reader<&[u8]>) -> Result<HashMap<String, usize>, String> {
    let headers = reader.headers().map_err(|e| csv_problem(&e))?;
    let mut columns = HashMap::new();
    let mut seen = HashSet::new();
    for (i, name) in headers.iter().enumerate() {
        let name = name.trim().to_ascii_lowercase().replace([' ', '-'], "_");
        if EXPORT_ONLY.contains(&name.as_str()) {
            continue;
        }
        if !COLUMNS.contains(&name.as_str()) {
            return Err(format!(
                "unknown column `{}`: the columns are {}",
                shorten(&name),
                COLUMNS.join(", ")
            ));
        }
        if !seen.insert(name.clone()) {
            return Err(format!("column `{name}` appears twice"));
        }
        columns.insert(name, i);
    }
    for required in ["product", "serial_number"] {
        if !columns.contains_key(required) {
            return Err(format!("the header has no `{required}` column"));
        }
    }
    Ok(columns)
}

/// Characters that make a spreadsheet cell a formula.
const FORMULA: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];
/// Where a spreadsheet may start a new cell inside one CSV field: a sheet opened with `;` or
/// tab as its separator splits `x;=CMD()` into `x` and a formula.
const CELL_BREAKS: [char; 3] = [';', ',', '\t'];

/// A value as an export writes it: every part a spreadsheet could read as a cell of its own
/// (the start, and after each `;`, `,` or tab) that would start a formula gets a leading `'`
/// (OWASP's advice against CSV injection, for every cell the value could become).
fn neutralise(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    let mut at_cell_start = true;
    for c in value.chars() {
        if at_cell_start && FORMULA.contains(&c) {
            out.push('\'');
        }
        out.push(c);
        at_cell_start = CELL_BREAKS.contains(&c);
    }
    out
}

/// What [`neutralise`] wrote, read back: a `'` at a cell start before a formula character is
/// taken off.
fn unquote_formula(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains('\'') {
        return value.into();
    }
    let chars: Vec<char> = value.chars().collect();
    let mut out = String::with_capacity(value.len());
    let mut at_cell_start = true;
    for (i, &c) in chars.iter().enumerate() {
        let quote_before_formula =
            c == '\'' && at_cell_start && chars.get(i + 1).is_some_and(|n| FORMULA.contains(n));
        if !quote_before_formula {
            out.push(c);
        }
        at_cell_start = CELL_BREAKS.contains(&c);
    }
    out.into()
}

/// The header of an export: the import's columns, then what only an export carries.
pub fn export_header() -> Vec<&'static str> {
    let mut header = vec!["id"];
    header.extend(COLUMNS);
    header.extend(["state", "created_at", "updated_at"]);
    header
}

/// One device as an export row (see [`export_header`]), formulas neutralised.
pub fn export_row(device: &crate::inventory::Device, times: (&str, &str)) -> Vec<String> {
    let safe = |v: &str| neutralise(v);
    let text = |v: &Option<String>| v.as_deref().map(safe).unwrap_or_default();
    let tags: Vec<&str> = device
        .tags
        .iter()
        .map(crate::inventory::Tag::as_str)
        .collect();
    vec![
        device.id.to_string(),
        device.product_id.to_string(),
        safe(&device.serial_number),
        text(&device.hardware_id),
        text(&device.owner),
        text(&device.site),
        safe(&tags.join(";")),
        text(&device.firmware_version),
        device.state.as_str().to_owned(),
        times.0.to_owned(),
        times.1.to_owned(),
    ]
}

/// Rows as CSV text (RFC 4180 quoting, CRLF line ends).
pub fn to_csv(rows: &[Vec<String>]) -> Vec<u8> {
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    for row in rows {
        // Writing to memory cannot fail; a row is skipped rather than the export cut.
        let _ = writer.write_record(row);
    }
    writer.into_inner().unwrap_or_default()
}

fn csv_problem(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Utf8 { .. } => "not UTF-8 text: save the sheet as CSV UTF-8".to_owned(),
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => {
            format!("{len} fields where the header has {expected_len}")
        }
        _ => format!("not readable as CSV: {e}"),
    }
}

/// The column an inventory error is about, from its message (`` `owner` is too long ``).
fn column_of(message: &str) -> Option<&'static str> {
    COLUMNS
        .iter()
        .copied()
        .find(|c| message.contains(&format!("`{c}`")))
        .or_else(|| message.contains("tag").then_some("tags"))
}

fn shorten(value: &str) -> String {
    value.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn product_of(value: &str) -> Option<ProductId> {
        match value {
            "Thermostat" => "01a24537-5e25-753a-8855-c0c4e3ca529f".parse().ok(),
            "Gateway" => "01a24537-5e25-753a-8855-c0c4e3ca5300".parse().ok(),
            _ => value.parse().ok(),
        }
    }

    #[test]
    fn a_sheet_becomes_devices_with_their_fields() {
        let csv = "\u{feff}Product,Serial Number,owner,site,tags,hardware_id,firmware_version\r\n\
                   Thermostat,SN-1,\"Ops, night shift\",plant-1,line-3;spare,hw-1,1.2.0\r\n\
                   \r\n\
                   Gateway,SN-1,,,,,\r\n";
        let parsed = parse_devices(csv.as_bytes(), product_of);
        assert!(parsed.is_clean(), "{:?}", parsed.errors);
        assert_eq!(parsed.rows.len(), 2);
        let first = &parsed.rows[0];
        assert_eq!(
            first.line,
            2,
            "{:?}",
            parsed.rows.iter().map(|r| r.line).collect::<Vec<_>>()
        );
        assert_eq!(first.device.owner.as_deref(), Some("Ops, night shift"));
        assert_eq!(first.device.tags.len(), 2);
        assert_eq!(
            parsed.rows[1].line, 4,
            "the blank line is skipped but counted"
        );
        assert_eq!(parsed.rows[1].device.site, None);
    }

    #[test]
    fn every_problem_is_reported_with_its_line_and_column() {
        let csv = "product,serial_number,owner,tags\n\
                   Thermostat,SN-1,,\n\
                   Nope,SN-2,,\n\
                   Thermostat,,,\n\
                   Thermostat,SN-1,,\n\
                   Thermostat,SN-5,,bad tag!\n\
                   ,SN-6,,\n";
        let parsed = parse_devices(csv.as_bytes(), product_of);
        let got: Vec<(u64, Option<&str>)> = parsed
            .errors
            .iter()
            .map(|e| (e.line, e.column.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                (3, Some("product")),
                (4, Some("serial_number")),
                (5, Some("serial_number")),
                (6, Some("tags")),
                (7, Some("product")),
            ],
            "{:#?}",
            parsed.errors
        );
        assert!(parsed.errors[2].message.contains("also on line 2"));
        assert_eq!(parsed.rows.len(), 1);
    }

    #[test]
    fn a_bad_header_or_shape_is_refused_whole() {
        for (csv, expected) in [
            (
                "product,serial_numbr\nThermostat,1\n",
                "unknown column `serial_numbr`",
            ),
            ("product,owner\nThermostat,x\n", "no `serial_number` column"),
            ("product,serial_number,product\n", "appears twice"),
            ("product,serial_number\n", "no devices"),
            (
                "product,serial_number\nThermostat,1,extra\n",
                "3 fields where the header has 2",
            ),
            ("", "no `product` column"),
        ] {
            let parsed = parse_devices(csv.as_bytes(), product_of);
            assert!(parsed.rows.is_empty() || !parsed.is_clean(), "{csv}");
            let all: Vec<&str> = parsed.errors.iter().map(|e| e.message.as_str()).collect();
            assert!(all.iter().any(|m| m.contains(expected)), "{csv}: {all:?}");
        }
        let bytes = b"product,serial_number\nThermostat,\xff\xfe\n";
        let parsed = parse_devices(bytes, product_of);
        assert!(
            parsed.errors[0].message.contains("not UTF-8"),
            "{:?}",
            parsed.errors
        );
    }

    #[test]
    fn rows_past_the_limit_are_refused() {
        let mut csv = String::from("product,serial_number\n");
        for i in 0..=MAX_ROWS {
            csv.push_str(&format!("Thermostat,SN-{i}\n"));
        }
        let parsed = parse_devices(csv.as_bytes(), product_of);
        assert!(!parsed.is_clean());
        assert!(
            parsed
                .errors
                .last()
                .unwrap()
                .message
                .contains("more than 100000 rows")
        );
    }

    #[test]
    fn an_export_imports_again_and_runs_no_formula() {
        let product = product_of("Thermostat").unwrap();
        let csv =
            format!("product,serial_number,owner,tags\n{product},SN-1,=HYPERLINK(\"x\"),-a;b\n");
        let parsed = parse_devices(csv.as_bytes(), product_of);
        assert!(parsed.is_clean(), "{:?}", parsed.errors);
        let new = &parsed.rows[0].device;
        let device = crate::inventory::Device {
            id: crate::ids::DeviceId::generate(),
            product_id: new.product_id,
            serial_number: new.serial_number.clone(),
            hardware_id: None,
            owner: new.owner.clone(),
            site: None,
            tags: new.tags.clone(),
            firmware_version: None,
            state: crate::lifecycle::LifecycleState::Registered,
            created_at: time::OffsetDateTime::UNIX_EPOCH,
            updated_at: time::OffsetDateTime::UNIX_EPOCH,
        };
        let header: Vec<String> = export_header().into_iter().map(str::to_owned).collect();
        let file = to_csv(&[header, export_row(&device, ("t0", "t1"))]);
        let text = String::from_utf8(file.clone()).unwrap();
        assert!(text.contains(",\"'=HYPERLINK(\"\"x\"\")\","), "{text}");
        assert!(text.contains(",'-a;b,"), "{text}");
        let again = parse_devices(&file, product_of);
        assert!(again.is_clean(), "{:?}", again.errors);
        assert_eq!(
            &again.rows[0].device, new,
            "an export reads back as the device it was"
        );
    }

    #[test]
    fn a_formula_after_a_separator_is_neutralised_too() {
        assert_eq!(neutralise("x;=WEBSERVICE(1);y"), "x;'=WEBSERVICE(1);y");
        assert_eq!(neutralise("a,+1\t@b"), "a,'+1\t'@b");
        assert_eq!(neutralise("plain-text = fine"), "plain-text = fine");
        assert_eq!(unquote_formula("x;'=WEBSERVICE(1);y"), "x;=WEBSERVICE(1);y");
        assert_eq!(unquote_formula("it's"), "it's");
    }

    proptest! {
        /// No cell a spreadsheet could make of an exported value starts a formula, and the
        /// import reads back what was exported (values without a `'` before a formula
        /// character at a cell start, which the import takes as the export's own).
        #[test]
        fn neutralised_values_run_nothing_and_read_back(value in "[a-z;,\t=+@' -]{0,30}") {
            let written = neutralise(&value);
            for cell in written.split([';', ',', '\t']) {
                prop_assert!(!cell.starts_with(FORMULA), "{written:?}");
            }
            if !value.contains(";'") && !value.contains(",'") && !value.contains("\t'") && !value.starts_with('\'') {
                prop_assert_eq!(unquote_formula(&written), value.as_str());
            }
        }

        /// Any bytes: no panic, and every device that comes out passed the rules.
        #[test]
        fn any_file_is_read_or_refused(body in prop::collection::vec(any::<u8>(), 0..400)) {
            let mut csv = b"product,serial_number,owner,tags\n".to_vec();
            csv.extend_from_slice(&body);
            let parsed = parse_devices(&csv, product_of);
            for row in &parsed.rows {
                prop_assert!(row.line >= 2);
                prop_assert!(!row.device.serial_number.is_empty());
            }
            prop_assert!(parsed.errors.iter().all(|e| e.line >= 1));
        }

        /// Well-formed sheets are read whole: every row becomes its device, in order.
        #[test]
        fn well_formed_sheets_are_read_whole(serials in prop::collection::btree_set("[A-Za-z0-9-]{1,20}", 1..40)) {
            let mut csv = String::from("product,serial_number\n");
            for s in &serials {
                csv.push_str(&format!("Thermostat,{s}\n"));
            }
            let parsed = parse_devices(csv.as_bytes(), product_of);
            prop_assert!(parsed.is_clean(), "{:?}", parsed.errors);
            let got: Vec<&str> = parsed.rows.iter().map(|r| r.device.serial_number.as_str()).collect();
            let want: Vec<&str> = serials.iter().map(String::as_str).collect();
            prop_assert_eq!(got, want);
        }
    }
}
