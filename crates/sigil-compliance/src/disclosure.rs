//! Product checks of coordinated vulnerability disclosure (CRA Annex I Part II (5) and (6),
//! ETSI EN 303 645 5.2-1 and 5.2-2): a published, unexpired policy with a contact, and every
//! report acknowledged and decided within the days the policy promises. Where Sigil publishes
//! no policy for the product, the disclosure attestation stands in.

use crate::Status;
use crate::device::{Evidence, Outcome, ProductFacts, Time};

/// One report's deadlines and when each step was taken (unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportFacts {
    pub id: String,
    pub acknowledge_by: Time,
    pub acknowledged: Option<Time>,
    pub decide_by: Time,
    pub decided: Option<Time>,
}

/// What Sigil knows of a product's disclosure.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DisclosureFacts {
    /// The policy that applies (the product's own, else the organisation's): when its
    /// `security.txt` expires, how many contacts it names, and whose it is.
    pub policy: Option<(Time, usize, String)>,
    pub reports: Vec<ReportFacts>,
}

pub const CHECKS: [&str; 2] = ["product.disclosure-published", "product.disclosure-timely"];

/// The outcome of `check` for `product`, or `None` if it is not one of [`CHECKS`].
pub fn evaluate(
    check: &str,
    product: &ProductFacts,
    now: Time,
    attested: Option<&Outcome>,
) -> Option<Outcome> {
    if !CHECKS.contains(&check) {
        return None;
    }
    let evidence = vec![Evidence::Product(product.id.clone())];
    let outcome = |status, reason: String| Outcome {
        status,
        reason,
        evidence: evidence.clone(),
    };
    let facts = product.disclosure.clone().unwrap_or_default();
    Some(if check == "product.disclosure-published" {
        published(&facts, now, attested, outcome)
    } else {
        timely(&facts, now, outcome)
    })
}

fn published(
    facts: &DisclosureFacts,
    now: Time,
    attested: Option<&Outcome>,
    outcome: impl Fn(Status, String) -> Outcome,
) -> Outcome {
    match &facts.policy {
        Some((expires, contacts, scope)) if *expires > now && *contacts > 0 => outcome(
            Status::Pass,
            format!(
                "security.txt published ({scope}'s policy, {contacts} contact(s)), valid for {} more day(s)",
                (expires - now) / 86_400
            ),
        ),
        Some((expires, _, scope)) => outcome(
            Status::Fail,
            format!(
                "{scope}'s security.txt expired {} day(s) ago: review and republish the policy",
                (now - expires) / 86_400
            ),
        ),
        None => match attested {
            Some(a) => Outcome {
                status: a.status,
                reason: format!("no policy published in Sigil; attested: {}", a.reason),
                evidence: a.evidence.clone(),
            },
            None => outcome(
                Status::Fail,
                "no disclosure policy or contact published (security.txt) and none attested".into(),
            ),
        },
    }
}

fn timely(
    facts: &DisclosureFacts,
    now: Time,
    outcome: impl Fn(Status, String) -> Outcome,
) -> Outcome {
    if facts.reports.is_empty() {
        return outcome(
            Status::NotApplicable,
            "no vulnerability report received".into(),
        );
    }
    let mut missed = Vec::new();
    for r in &facts.reports {
        let late = |done: Option<Time>, due: Time| match done {
            Some(at) => at > due,
            None => now > due,
        };
        if late(r.acknowledged, r.acknowledge_by) {
            missed.push(format!("report {} not acknowledged in time", r.id));
        }
        if late(r.decided, r.decide_by) {
            missed.push(format!("report {} not decided in time", r.id));
        }
    }
    if missed.is_empty() {
        outcome(
            Status::Pass,
            format!(
                "{} report(s), each acknowledged and decided on time so far",
                facts.reports.len()
            ),
        )
    } else {
        outcome(Status::Fail, missed.join("; "))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const NOW: Time = 1_800_000_000;
    const DAY: Time = 86_400;

    fn product(facts: Option<DisclosureFacts>) -> ProductFacts {
        ProductFacts {
            id: "acme".into(),
            disclosure: facts,
            ..ProductFacts::default()
        }
    }

    fn report(ack: Option<Time>, decided: Option<Time>) -> ReportFacts {
        ReportFacts {
            id: "r1".into(),
            acknowledge_by: NOW - 10 * DAY,
            acknowledged: ack,
            decide_by: NOW + DAY,
            decided,
        }
    }

    #[test]
    fn a_published_policy_passes_until_it_expires() {
        let valid = DisclosureFacts {
            policy: Some((NOW + DAY, 1, "acme".into())),
            reports: vec![],
        };
        let p = product(Some(valid));
        let o = evaluate("product.disclosure-published", &p, NOW, None).unwrap();
        assert_eq!(o.status, Status::Pass);
        let o = evaluate("product.disclosure-published", &p, NOW + 2 * DAY, None).unwrap();
        assert_eq!(o.status, Status::Fail, "{}", o.reason);
        assert!(o.reason.contains("expired"));
        let none = product(None);
        assert_eq!(
            evaluate("product.disclosure-published", &none, NOW, None)
                .unwrap()
                .status,
            Status::Fail
        );
        let attested = Outcome {
            status: Status::Pass,
            reason: "policy at example.com".into(),
            evidence: vec![Evidence::Attestation("a1".into())],
        };
        let o = evaluate("product.disclosure-published", &none, NOW, Some(&attested)).unwrap();
        assert_eq!(o.status, Status::Pass);
        assert!(o.reason.contains("attested"));
    }

    #[test]
    fn reports_must_be_acknowledged_and_decided_on_time() {
        let check = "product.disclosure-timely";
        let with = |r: ReportFacts| {
            product(Some(DisclosureFacts {
                policy: None,
                reports: vec![r],
            }))
        };
        assert_eq!(
            evaluate(check, &product(None), NOW, None).unwrap().status,
            Status::NotApplicable
        );
        // Acknowledged a day before its deadline, decision not due yet.
        let ok = with(report(Some(NOW - 11 * DAY), None));
        assert_eq!(
            evaluate(check, &ok, NOW, None).unwrap().status,
            Status::Pass
        );
        // Never acknowledged.
        let o = evaluate(check, &with(report(None, None)), NOW, None).unwrap();
        assert_eq!(o.status, Status::Fail);
        assert!(o.reason.contains("not acknowledged"));
        // Acknowledged late stays late, even once done.
        let late = with(report(Some(NOW - 9 * DAY), Some(NOW - 9 * DAY)));
        assert_eq!(
            evaluate(check, &late, NOW, None).unwrap().status,
            Status::Fail
        );
        // The decision deadline passes.
        let o = evaluate(check, &ok, NOW + 2 * DAY, None).unwrap();
        assert!(o.reason.contains("not decided"), "{}", o.reason);
    }
}
