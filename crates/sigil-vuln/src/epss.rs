//! FIRST's Exploit Prediction Scoring System, as its daily CSV publishes it:
//! `#model_version:...,score_date:...`, then `cve,epss,percentile`, then one row per CVE.

use crate::VulnError;
use crate::kev::is_cve;

/// Largest file accepted (a day's scores for every CVE are about 10 MB).
pub const MAX_EPSS_BYTES: usize = 128 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq)]
pub struct EpssScores {
    pub model_version: Option<String>,
    /// The day the scores are for (the file's `score_date`), if it says.
    pub score_date: Option<String>,
    /// `(cve, probability of exploitation in 30 days, percentile)`, both in [0, 1].
    pub scores: Vec<(String, f64, f64)>,
}

impl EpssScores {
    pub fn parse(bytes: &[u8]) -> Result<Self, VulnError> {
        if bytes.len() > MAX_EPSS_BYTES {
            return Err(VulnError::TooLarge {
                what: "EPSS file",
                limit: MAX_EPSS_BYTES,
            });
        }
        let bad = |line: usize, why: String| VulnError::Malformed {
            what: "EPSS file",
            line,
            reason: why,
        };
        let text = std::str::from_utf8(bytes).map_err(|e| bad(0, format!("not UTF-8: {e}")))?;
        let mut out = EpssScores {
            model_version: None,
            score_date: None,
            scores: Vec::new(),
        };
        let mut header = false;
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            let line = line.trim_end_matches('\r');
            if let Some(meta) = line.strip_prefix('#') {
                for field in meta.split(',') {
                    match field.split_once(':') {
                        Some(("model_version", v)) => out.model_version = Some(v.to_owned()),
                        Some(("score_date", v)) => out.score_date = Some(v.to_owned()),
                        _ => {}
                    }
                }
                continue;
            }
            if line.is_empty() {
                continue;
            }
            if !header {
                if line != "cve,epss,percentile" {
                    return Err(bad(n, "the header must be `cve,epss,percentile`".into()));
                }
                header = true;
                continue;
            }
            let mut cols = line.split(',');
            let (Some(cve), Some(epss), Some(pct), None) =
                (cols.next(), cols.next(), cols.next(), cols.next())
            else {
                return Err(bad(n, "three columns expected".into()));
            };
            if !is_cve(cve) {
                return Err(bad(
                    n,
                    format!(
                        "`{}` is not a CVE id",
                        cve.chars().take(40).collect::<String>()
                    ),
                ));
            }
            let unit = |v: &str| v.parse::<f64>().ok().filter(|x| (0.0..=1.0).contains(x));
            let (Some(epss), Some(pct)) = (unit(epss), unit(pct)) else {
                return Err(bad(n, "scores are numbers from 0 to 1".into()));
            };
            out.scores.push((cve.to_owned(), epss, pct));
        }
        if !header {
            return Err(bad(0, "no `cve,epss,percentile` header".into()));
        }
        Ok(out)
    }
}
