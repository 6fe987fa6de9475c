//! The detector task: envelopes from the bus are opened (forged or malformed ones refused and
//! counted), their datapoints applied to the profiles, and the alarms that result recorded,
//! mitigated and announced, before the envelope is acknowledged.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;

use sigil_audit::Actor;
use sigil_detect::{AlarmEvent, Mitigation, Transition};
use sigil_domain::{DeviceId, LifecycleEvent, LifecycleState, RevocationReason};
use sigil_store::{NewAlarm, StoreError};

use super::{Cohort, Delivery, EnvelopeRefusal};
use crate::Authority;

/// How often windows that ended are closed (a silent device's alarms clear, cohorts update).
const TICK: Duration = Duration::from_millis(500);
/// How long a device's product and site are trusted from the cache.
const COHORT_TTL_MS: i64 = 60_000;
/// How often the times of the devices' last reports are written to the database.
const REPORTS_FLUSH_MS: i64 = 5_000;
/// A report this long after the recorded one is announced (`monitoring.metrics_resumed`):
/// the compliance engine may judge the device stale once the recorded one is
/// `METRICS_MAX_AGE` old, and two minutes cover the flush, the commit and clock skew between
/// instances. Agents report at least every ten minutes, so a reporting device never is.
const RESUME_GAP: i64 = sigil_compliance::device::METRICS_MAX_AGE - 120;

/// Run the detector until the bus closes.
pub fn spawn_detector(authority: Arc<Authority>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let monitoring = authority.monitoring();
        let mut deliveries = match monitoring.transport.deliveries().await {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "monitoring: the detector cannot receive metrics");
                return;
            }
        };
        monitoring.running.store(true, Ordering::Relaxed);
        tracing::info!(
            transport = monitoring.transport.name(),
            "monitoring: detector running"
        );
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_flush_ms = 0;
        loop {
            // Deliveries first: a backlog (after a restart) is applied before windows are
            // closed on the wall clock, so its datapoints are not judged late.
            tokio::select! {
                biased;
                delivery = deliveries.recv() => match delivery {
                    Some(d) => apply(&authority, d).await,
                    None => break,
                },
                _ = tick.tick() => {
                    let now = authority.now_ms();
                    monitoring.last_tick_ms.store(now, Ordering::Relaxed);
                    let events = monitoring.with_detector(|d| d.tick(now));
                    handle(&authority, events).await;
                }
            }
            // Also while a backlog keeps the tick waiting: reports must not look stale then.
            let now = authority.now_ms();
            if now - last_flush_ms >= REPORTS_FLUSH_MS {
                last_flush_ms = now;
                flush_reports(&authority).await;
            }
        }
        monitoring.running.store(false, Ordering::Relaxed);
        tracing::warn!("monitoring: the metrics bus closed; detector stopped");
    })
}

async fn apply(authority: &Arc<Authority>, delivery: Delivery) {
    let m = authority.monitoring();
    m.counters.envelopes.fetch_add(1, Ordering::Relaxed);
    let opened = m.sealer.open(&delivery.envelope).and_then(|batch| {
        let mut seen = m.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.admit(&batch, authority.now_ms()).map(|()| batch)
    });
    let batch = match opened {
        Ok(batch) => batch,
        Err(refusal) => {
            let counter = match refusal {
                EnvelopeRefusal::Forged => &m.counters.forged,
                EnvelopeRefusal::Replayed | EnvelopeRefusal::Stale => &m.counters.replayed,
                EnvelopeRefusal::Malformed(_) => &m.counters.malformed,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(reason = %refusal, "monitoring: metrics envelope refused");
            // Acknowledged: redelivering it would refuse it again.
            delivery.acknowledge();
            return;
        }
    };
    let from_devices = batch.source == super::bus::DEVICE_SOURCE;
    let mut ready = Vec::with_capacity(batch.points.len());
    for point in batch.points {
        if let Err(e) = point.validate() {
            m.counters.malformed.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(error = %e, "monitoring: datapoint refused");
            continue;
        }
        match cohort(authority, &point.device).await {
            Some(c) => ready.push((point, c)),
            None => {
                m.counters.unknown_device.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    m.counters
        .datapoints
        .fetch_add(ready.len() as u64, Ordering::Relaxed);
    let events = m.with_detector(|d| {
        let mut events = Vec::new();
        for (point, c) in &ready {
            events.extend(d.ingest(point, &c.product, &c.site));
        }
        events
    });
    if let Ok(mut seen) = m.last_seen.lock() {
        for (point, _) in &ready {
            let at = seen.entry(point.device.as_str().into()).or_insert(0);
            *at = (*at).max(point.at_ms);
        }
    }
    // When this detector applied the report (not a time the batch carries: one skewed
    // collector must not make a device look fresh for hours).
    let applied = authority.now_ms().div_euclid(1000);
    if from_devices && let Ok(mut reports) = m.reports.lock() {
        for (point, _) in &ready {
            if let Ok(device) = point.device.parse::<DeviceId>() {
                reports.insert(device, applied);
            }
        }
    }
    handle(authority, events).await;
    delivery.acknowledge();
}

/// Write when the devices' own reports last arrived; kept for the next flush if the database
/// refuses.
async fn flush_reports(authority: &Arc<Authority>) {
    let m = authority.monitoring();
    let pending: Vec<(DeviceId, i64)> = match m.reports.lock() {
        Ok(mut reports) => reports.drain().collect(),
        Err(_) => return,
    };
    if pending.is_empty() {
        return;
    }
    let actor = Actor::system("detector");
    if let Err(e) = authority
        .store()
        .record_metrics_reports(&actor, &pending, RESUME_GAP, authority.now())
        .await
    {
        tracing::error!(error = %e, devices = pending.len(), "monitoring: could not record metrics reports");
        if let Ok(mut reports) = m.reports.lock() {
            for (device, at) in pending {
                let kept = reports.entry(device).or_insert(0);
                *kept = (*kept).max(at);
            }
        }
    }
}

/// The device's product and site, from the cache or the inventory; `None` for a name that is
/// no device of the inventory, or a retired one.
async fn cohort(authority: &Arc<Authority>, device: &str) -> Option<Cohort> {
    let m = authority.monitoring();
    let now = authority.now_ms();
    if let Some(c) = m.cohorts.lock().ok()?.get(device)
        && now - c.fetched_ms < COHORT_TTL_MS
    {
        return Some(c.clone());
    }
    let id: DeviceId = device.parse().ok()?;
    let record = match authority.store().get_device(id).await {
        Ok(d) if d.state != LifecycleState::Retired => d,
        Ok(_) | Err(StoreError::NotFound { .. }) => {
            m.with_detector(|d| d.forget(device));
            return None;
        }
        Err(e) => {
            tracing::error!(error = %e, "monitoring: inventory unavailable");
            return None;
        }
    };
    let c = Cohort {
        product: record.product_id.to_string(),
        site: record.site.unwrap_or_default(),
        fetched_ms: now,
    };
    m.cohorts.lock().ok()?.insert(device.to_owned(), c.clone());
    Some(c)
}

/// Record each alarm transition; a raised, unsuppressed alarm is mitigated and announced.
async fn handle(authority: &Arc<Authority>, events: Vec<AlarmEvent>) {
    let actor = Actor::system("detector");
    for event in events {
        let Ok(device) = event.device.parse::<DeviceId>() else {
            continue;
        };
        let explanation = serde_json::to_value(&event.explanation).unwrap_or_default();
        let result = match event.transition {
            Transition::Raised => {
                let new = NewAlarm {
                    device,
                    profile: event.profile.clone(),
                    behaviour: event.behaviour.clone(),
                    metric: event.metric.to_string(),
                    severity: event.severity.as_str().to_owned(),
                    mitigation: event.mitigation.as_str().to_owned(),
                    suppressed: event.suppressed,
                    raised_at_ms: event.at_ms,
                    explanation,
                };
                match authority
                    .store()
                    .raise_alarm(&actor, &new, authority.now())
                    .await
                {
                    Ok(Some(record)) if !event.suppressed => {
                        respond(authority, &actor, device, Some(&record.id), &event).await;
                        Ok(())
                    }
                    // The alarm is already recorded (another detector raised it, or this one
                    // started over): mitigate all the same, without announcing it twice.
                    Ok(None) if !event.suppressed => {
                        respond(authority, &actor, device, None, &event).await;
                        Ok(())
                    }
                    Ok(_) => Ok(()),
                    Err(e) => Err(e),
                }
            }
            Transition::Cleared => authority
                .store()
                .clear_alarm(
                    &actor,
                    device,
                    &event.behaviour,
                    event.at_ms,
                    &explanation,
                    authority.now(),
                )
                .await
                .map(|_| ()),
        };
        if let Err(e) = result {
            tracing::error!(error = %e, device = %device, behaviour = %event.behaviour, "monitoring: could not record an alarm");
        }
    }
}

/// The behaviour's mitigation, then the webhook.
async fn respond(
    authority: &Arc<Authority>,
    actor: &Actor,
    device: DeviceId,
    alarm: Option<&str>,
    event: &AlarmEvent,
) {
    let summary = &event.explanation.summary;
    let outcome = match event.mitigation {
        Mitigation::None | Mitigation::Notify => Ok(()),
        Mitigation::Quarantine => authority
            .quarantine(actor, device, summary, alarm)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Mitigation::Suspend => authority
            .store()
            .transition_device(actor, device, LifecycleEvent::Suspend, authority.now())
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Mitigation::Revoke => match authority
            .store()
            .revoke_device_certificates(
                actor,
                device,
                RevocationReason::KeyCompromise,
                authority.now(),
            )
            .await
        {
            Ok(_) => {
                authority.publish_crl(actor).await;
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        },
    };
    if let Err(e) = &outcome {
        tracing::error!(error = %e, device = %device, mitigation = event.mitigation.as_str(), "monitoring: mitigation failed");
    }
    if event.mitigation != Mitigation::None
        && let Some(alarm) = alarm
        && let Some(alerts) = authority.alerts()
    {
        alerts.deliver(json!({
            "event": "alarm.raised",
            "alarm": alarm,
            "device": event.device,
            "profile": event.profile,
            "behaviour": event.behaviour,
            "severity": event.severity,
            "mitigation": event.mitigation,
            "mitigated": outcome.is_ok(),
            "explanation": event.explanation,
        }));
    }
}
