//! Leader election through a `coordination.k8s.io` Lease, as client-go
//! does it: the holder renews the Lease every few seconds; another replica
//! takes it only after seeing it unchanged for a whole lease duration (its
//! own clock measures that, so clocks that disagree do not matter). Writes
//! carry the resourceVersion they read, so two replicas never both win.
//!
//! A leader stops writing before a standby may take over: its lead lasts
//! a renew deadline (two thirds of the lease duration, as client-go's
//! defaults) from the moment it sent its last successful renewal, every
//! Lease request gets a timeout within that deadline, and every write of
//! the controllers checks [`Leadership::check`] first. A leader paused (a
//! stopped process, a starved runtime) wakes up past its deadline and
//! writes nothing, whatever its tasks do first.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use tracing::{debug, info, warn};

use super::FIELD_MANAGER;
use crate::{Error, Result};

/// Who competes for which Lease, and how fast.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    /// How long a Lease stays valid without a renewal.
    pub duration: Duration,
    /// How often the holder renews.
    pub renew_every: Duration,
    /// How long after it sent its last successful renewal the holder
    /// still leads: shorter than `duration`, so it has stopped before a
    /// standby may take over.
    pub renew_deadline: Duration,
}

impl LeaseConfig {
    /// The config for a lease `duration`: renewals 7 times per duration,
    /// a renew deadline of two thirds of it.
    pub fn new(namespace: String, name: String, identity: String, duration: Duration) -> Self {
        Self {
            namespace,
            name,
            identity,
            duration,
            renew_every: (duration / 7).max(Duration::from_millis(200)),
            renew_deadline: duration * 2 / 3,
        }
    }
}

/// Whether this process may write: always without leader election, and
/// with it only until the renew deadline of its last successful renewal.
#[derive(Clone, Debug, Default)]
pub struct Leadership {
    /// `None`: no leader election. Else the end of the current lead.
    until: Option<Arc<Mutex<Option<Instant>>>>,
}

impl Leadership {
    /// A process that runs without leader election.
    pub fn always() -> Self {
        Self::default()
    }

    fn elected() -> Self {
        Self {
            until: Some(Arc::new(Mutex::new(None))),
        }
    }

    fn extend_to(&self, until: Instant) {
        if let Some(lead) = &self.until {
            *lead.lock().unwrap_or_else(|e| e.into_inner()) = Some(until);
        }
    }

    /// `Ok` while this process may write.
    pub fn check(&self) -> Result<()> {
        let Some(lead) = &self.until else {
            return Ok(());
        };
        let until = *lead.lock().unwrap_or_else(|e| e.into_inner());
        match until {
            Some(until) if Instant::now() < until => Ok(()),
            _ => Err(Error::LeaseLost(
                "its renew deadline passed; no more writes".into(),
            )),
        }
    }
}

/// What a replica does with the Lease it sees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nobody holds it, it expired, or it is ours: write ourselves in.
    Take,
    /// Someone else holds it: look again later.
    Wait,
}

/// The pure rule: `unchanged_for` is how long this replica has seen the
/// Lease's holder and renew time unchanged.
pub fn step(spec: Option<&LeaseSpec>, identity: &str, unchanged_for: Duration) -> Step {
    let Some(spec) = spec else {
        return Step::Take;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    let duration = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(15).max(1) as u64);
    if holder.is_empty() || holder == identity || unchanged_for >= duration {
        Step::Take
    } else {
        Step::Wait
    }
}

pub struct Elector {
    api: Api<Lease>,
    config: LeaseConfig,
    leadership: Leadership,
    /// The last holder and renew time seen, and since when.
    seen: Option<(String, String, Instant)>,
}

impl Elector {
    pub fn new(client: Client, config: LeaseConfig) -> Self {
        Self {
            api: Api::namespaced(client, &config.namespace),
            config,
            leadership: Leadership::elected(),
            seen: None,
        }
    }

    /// What the controllers check before each write.
    pub fn leadership(&self) -> Leadership {
        self.leadership.clone()
    }

    /// Waits until this replica holds the Lease.
    pub async fn acquire(&mut self) -> Result<()> {
        info!(lease = %self.config.name, identity = %self.config.identity, "waiting to lead");
        loop {
            match self.try_once().await {
                Ok(true) => {
                    info!(lease = %self.config.name, identity = %self.config.identity, "leading");
                    return Ok(());
                }
                Ok(false) => {}
                Err(e) => warn!(error = %e, "reading or writing the leader Lease failed"),
            }
            tokio::time::sleep(self.config.renew_every).await;
        }
    }

    /// Renews the Lease until the renew deadline passes without a
    /// successful renewal (or someone else took it): returns then, and the
    /// replica must stop working. The writes have stopped already:
    /// [`Leadership::check`] fails from the deadline on.
    pub async fn hold(&mut self) -> Error {
        loop {
            tokio::time::sleep(self.config.renew_every).await;
            if self.leadership.check().is_err() {
                return Error::LeaseLost(format!(
                    "not renewed within its renew deadline of {:?}",
                    self.config.renew_deadline
                ));
            }
            match self.try_once().await {
                Ok(true) => {}
                Ok(false) => {
                    return Error::LeaseLost("another replica took it".into());
                }
                Err(e) => warn!(error = %e, "renewing the leader Lease failed"),
            }
        }
    }

    /// Gives the Lease up, so a standby takes over at once.
    pub async fn release(&mut self) {
        if let Ok(Some(mut lease)) = self.api.get_opt(&self.config.name).await {
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            if spec.holder_identity.as_deref() == Some(self.config.identity.as_str()) {
                spec.holder_identity = None;
                let _ = self
                    .api
                    .replace(&self.config.name, &post_params(), &lease)
                    .await;
                info!(lease = %self.config.name, "released the leader Lease");
            }
        }
    }

    /// One look at the Lease, within a renew period; true when this
    /// replica holds it afterwards, and then it leads until the renew
    /// deadline counted from before the request was sent.
    async fn try_once(&mut self) -> Result<bool> {
        let sent = Instant::now();
        let held = tokio::time::timeout(self.config.renew_every, self.read_and_write())
            .await
            .map_err(|_| {
                Error::LeaseLost(format!(
                    "a Lease request took over {:?}",
                    self.config.renew_every
                ))
            })??;
        if held {
            self.leadership.extend_to(sent + self.config.renew_deadline);
        }
        Ok(held)
    }

    async fn read_and_write(&mut self) -> Result<bool> {
        let now = MicroTime(jiff::Timestamp::now());
        let current = self.api.get_opt(&self.config.name).await?;
        let spec = current.as_ref().and_then(|l| l.spec.as_ref());
        let key = spec.map(|s| {
            (
                s.holder_identity.clone().unwrap_or_default(),
                s.renew_time
                    .as_ref()
                    .map(|t| t.0.to_string())
                    .unwrap_or_default(),
            )
        });
        let unchanged_for = match (&self.seen, &key) {
            (Some((h, r, since)), Some((kh, kr))) if h == kh && r == kr => since.elapsed(),
            _ => {
                self.seen = key.map(|(h, r)| (h, r, Instant::now()));
                Duration::ZERO
            }
        };
        if step(spec, &self.config.identity, unchanged_for) == Step::Wait {
            debug!(holder = ?spec.and_then(|s| s.holder_identity.clone()), "standing by");
            return Ok(false);
        }
        let ours = spec.and_then(|s| s.holder_identity.as_deref()) == Some(&self.config.identity);
        let mut lease = current.clone().unwrap_or_else(|| Lease {
            metadata: ObjectMeta {
                name: Some(self.config.name.clone()),
                namespace: Some(self.config.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: None,
        });
        let before = lease.spec.clone().unwrap_or_default();
        lease.spec = Some(LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(self.config.duration.as_secs().max(1) as i32),
            acquire_time: if ours {
                before.acquire_time.clone()
            } else {
                Some(now.clone())
            },
            renew_time: Some(now),
            lease_transitions: Some(
                before.lease_transitions.unwrap_or(0) + i32::from(!ours && current.is_some()),
            ),
            ..before
        });
        let written = match current {
            Some(_) => {
                self.api
                    .replace(&lease.name_any(), &post_params(), &lease)
                    .await
            }
            None => self.api.create(&post_params(), &lease).await,
        };
        match written {
            Ok(_) => Ok(true),
            // Someone else wrote first: theirs stands.
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PostParams::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held_by(holder: &str) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn a_lead_ends_at_its_renew_deadline_before_a_standby_may_take_over() {
        let config = LeaseConfig::new("ns".into(), "l".into(), "a".into(), Duration::from_secs(15));
        assert_eq!(config.renew_deadline, Duration::from_secs(10));
        assert!(config.renew_every * 2 < config.renew_deadline);
        assert!(Leadership::always().check().is_ok());
        let lead = Leadership::elected();
        assert!(lead.check().is_err(), "no renewal yet");
        lead.extend_to(Instant::now() + Duration::from_secs(60));
        assert!(lead.check().is_ok());
        // A process paused past its deadline: every write is refused.
        lead.extend_to(Instant::now() - Duration::from_millis(1));
        assert!(matches!(lead.check(), Err(Error::LeaseLost(_))));
    }

    #[test]
    fn a_lease_is_taken_when_free_ours_or_stale() {
        let s = Duration::from_secs;
        assert_eq!(step(None, "a", s(0)), Step::Take);
        assert_eq!(step(Some(&held_by("")), "a", s(0)), Step::Take);
        assert_eq!(step(Some(&held_by("a")), "a", s(0)), Step::Take);
        assert_eq!(step(Some(&held_by("b")), "a", s(14)), Step::Wait);
        assert_eq!(step(Some(&held_by("b")), "a", s(15)), Step::Take);
    }
}
