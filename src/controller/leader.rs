//! Leader election through a `coordination.k8s.io` Lease, as client-go
//! does it: the holder renews the Lease every few seconds; another replica
//! takes it only after seeing it unchanged for a whole lease duration (its
//! own clock measures that, so clocks that disagree do not matter). Writes
//! carry the resourceVersion they read, so two replicas never both win.

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
    /// How often the holder renews; a holder that cannot renew for
    /// `duration` stops.
    pub renew_every: Duration,
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
    /// The last holder and renew time seen, and since when.
    seen: Option<(String, String, Instant)>,
}

impl Elector {
    pub fn new(client: Client, config: LeaseConfig) -> Self {
        Self {
            api: Api::namespaced(client, &config.namespace),
            config,
            seen: None,
        }
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

    /// Renews the Lease until a renewal has failed for a whole lease
    /// duration (or someone else took it): returns then, and the replica
    /// must stop working.
    pub async fn hold(&mut self) -> Error {
        let mut last_renewal = Instant::now();
        loop {
            tokio::time::sleep(self.config.renew_every).await;
            match self.try_once().await {
                Ok(true) => last_renewal = Instant::now(),
                Ok(false) => {
                    return Error::LeaseLost("another replica took it".into());
                }
                Err(e) => {
                    warn!(error = %e, "renewing the leader Lease failed");
                    if last_renewal.elapsed() >= self.config.duration {
                        return Error::LeaseLost(format!(
                            "could not renew it for {:?}",
                            self.config.duration
                        ));
                    }
                }
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

    /// One look at the Lease; true when this replica holds it afterwards.
    async fn try_once(&mut self) -> Result<bool> {
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
    fn a_lease_is_taken_when_free_ours_or_stale() {
        let s = Duration::from_secs;
        assert_eq!(step(None, "a", s(0)), Step::Take);
        assert_eq!(step(Some(&held_by("")), "a", s(0)), Step::Take);
        assert_eq!(step(Some(&held_by("a")), "a", s(0)), Step::Take);
        assert_eq!(step(Some(&held_by("b")), "a", s(14)), Step::Wait);
        assert_eq!(step(Some(&held_by("b")), "a", s(15)), Step::Take);
    }
}
