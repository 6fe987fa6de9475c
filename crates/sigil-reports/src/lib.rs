//! Compliance reports rendered for people and machines, from the API's posture report (the
//! JSON of `GET /api/v1/compliance/{framework}`): HTML and CSV for people, NIST OSCAL for
//! tools. Used by the API (report downloads, the console) and the CLI alike.

pub mod oscal;
mod tabular;

pub use tabular::{csv, html};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("the report is for `{0}`, which this catalogue does not have")]
    UnknownFramework(String),
    #[error(
        "the report was evaluated against catalogue {report}, this one is {catalogue}: use the same release on both ends"
    )]
    CatalogueVersion { report: String, catalogue: String },
}
