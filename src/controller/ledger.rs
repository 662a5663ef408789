//! Reading and writing the session ledger (`SessionLedger` objects, one
//! per Schedule and month). A write merges outcomes into the object with
//! a resourceVersion precondition and retries on conflict: the Schedule
//! controller and any number of Backfills may write the same month, and
//! recording an outcome twice changes nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, PostParams};
use kube::{Resource, ResourceExt};
use tracing::debug;

use super::{Context, FIELD_MANAGER, missing};
use crate::api::{LABEL_SCHEDULE, Schedule, SessionLedger};
use crate::core::decision::LedgerRecord;
use crate::core::ledger::{Ledger, LedgerIndex, Period, Unfiled, ledger_name};
use crate::core::observed::Note;
use crate::core::reason::Reason;
use crate::core::zoned_cron::seconds;
use crate::{Error, Result};

/// Conflicting writes retried before the reconcile gives up (and is
/// retried itself).
const ATTEMPTS: usize = 8;

/// The newer of two versions of an object: resourceVersions are etcd
/// revisions, which grow.
fn newer(a: Arc<SessionLedger>, b: Option<Arc<SessionLedger>>) -> Arc<SessionLedger> {
    let rv = |o: &SessionLedger| {
        o.resource_version()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    match b {
        Some(b) if rv(&b) > rv(&a) => b,
        _ => a,
    }
}

impl Context {
    /// The freshest copy of a ledger object this process knows: the
    /// cache's, or the one it wrote last if the cache has not caught up.
    fn freshest_ledger(&self, ns: &str, name: &str) -> Option<Arc<SessionLedger>> {
        let key = format!("{ns}/{name}");
        let cached = self
            .ledgers
            .get(&kube::runtime::reflector::ObjectRef::<SessionLedger>::new(name).within(ns));
        let mut written = self
            .ledgers_written
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mine = written.get(&key).cloned();
        match (cached, mine) {
            (Some(c), w) => {
                let freshest = newer(c.clone(), w);
                // The cache has caught up: the copy is not needed any more
                // (so this memory does not grow with every month written).
                if Arc::ptr_eq(&freshest, &c) {
                    written.remove(&key);
                }
                Some(freshest)
            }
            (None, w) => w,
        }
    }

    /// A Schedule's ledger objects, from the cache.
    pub fn ledgers_of(&self, ns: &str, schedule: &str) -> Vec<Arc<SessionLedger>> {
        self.ledgers_by_schedule
            .members(ns, schedule, &self.ledgers)
    }

    /// The ledger of `ledgers` (one Schedule's) over the months touching
    /// `[from, to)` (all of them without bounds). A month that cannot be
    /// read is left out, with a warning: it reads as sessions with no
    /// outcome.
    pub fn ledger_index(
        &self,
        ledgers: &[Arc<SessionLedger>],
        bounds: Option<(i64, i64)>,
    ) -> LedgerIndex {
        let mut index = LedgerIndex::default();
        for cached in ledgers {
            let (from, to) = (seconds(&cached.spec.from), seconds(&cached.spec.to));
            if bounds.is_some_and(|(lo, hi)| to <= lo || from >= hi) {
                continue;
            }
            let ns = cached.namespace().unwrap_or_default();
            let obj = self
                .freshest_ledger(&ns, &cached.name_any())
                .unwrap_or_else(|| cached.clone());
            match Ledger::from_spec(&obj.spec) {
                Ok(l) => index.insert(l),
                Err(e) => {
                    tracing::warn!(ledger = %obj.name_any(), error = %e, "unreadable SessionLedger")
                }
            }
        }
        index
    }

    /// Records outcomes of `schedule`'s sessions, decided by
    /// `record.attempt` (run by `record.owner`): one write per month
    /// touched, none when the ledger holds them already. Months past the
    /// retention are not written (the retention pass would delete them
    /// again at once), and neither is a month whose object cannot be read
    /// (someone edited it): the Schedule goes on, and the returned notes
    /// say what was left out.
    pub async fn record_outcomes(
        &self,
        schedule: &Schedule,
        record: &LedgerRecord,
    ) -> Result<Vec<Note>> {
        let ns = schedule
            .namespace()
            .ok_or_else(|| missing::<Schedule>(schedule, "namespace"))?;
        let horizon = self.clock.now() - self.ledger_retention;
        // By month: the outcomes decided now (true: over any attempt's),
        // and the Schedule's unfiled ones.
        let mut months: BTreeMap<Period, Vec<(Unfiled, bool)>> = BTreeMap::new();
        let mut past_retention = 0;
        let decided_now = record
            .outcomes
            .iter()
            .map(|&(at, outcome)| (Unfiled { at, outcome }, true));
        let unfiled = record.unfiled.iter().map(|&u| (u, false));
        for (outcome, over) in decided_now.chain(unfiled) {
            let period = Period::of(outcome.at);
            if period.to <= horizon {
                past_retention += 1;
                continue;
            }
            months.entry(period).or_default().push((outcome, over));
        }
        let mut notes = Vec::new();
        if past_retention > 0 {
            notes.push(Note {
                warning: false,
                reason: Reason::PastLedgerRetention,
                message: format!(
                    "{past_retention} outcome(s) of sessions older than the ledger keeps (--ledger-retention-days) are in this object's status but not in the session ledger"
                ),
            });
        }
        for (period, outcomes) in months {
            let written = self
                .record_month(
                    schedule,
                    &ns,
                    period,
                    &record.attempt,
                    &record.owner,
                    &outcomes,
                )
                .await;
            match written {
                Err(Error::UnreadableLedger { name, reason }) => notes.push(Note {
                    warning: true,
                    reason: Reason::UnreadableLedger,
                    message: format!(
                        "SessionLedger {name} cannot be read ({reason}), so {} outcome(s) were not recorded there; delete it and the operator writes the month anew from the outcomes it records next",
                        outcomes.len()
                    ),
                }),
                other => other?,
            }
        }
        Ok(notes)
    }

    async fn record_month(
        &self,
        schedule: &Schedule,
        ns: &str,
        period: Period,
        attempt: &str,
        owner: &str,
        outcomes: &[(Unfiled, bool)],
    ) -> Result<()> {
        let schedule_name = schedule.name_any();
        let name = ledger_name(&schedule_name, &period);
        let api: Api<SessionLedger> = Api::namespaced(self.client.clone(), ns);
        let pp = PostParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..PostParams::default()
        };
        let now = self.clock.now();
        let mut current = self.freshest_ledger(ns, &name);
        for _ in 0..ATTEMPTS {
            let mut ledger = match &current {
                Some(obj) => Ledger::from_spec(&obj.spec)
                    .map_err(|e| e.to_string())
                    // Named for this month, it must hold this month.
                    .and_then(|l| {
                        if l.period == period {
                            Ok(l)
                        } else {
                            Err(format!("it holds {}", l.period.label()))
                        }
                    })
                    .map_err(|reason| Error::UnreadableLedger {
                        name: name.clone(),
                        reason,
                    })?,
                None => Ledger::new(period.clone()),
            };
            let mut changed = false;
            for &(u, over) in outcomes {
                changed |= if over {
                    ledger.record(u.at, u.outcome, attempt, owner, now)
                } else {
                    ledger.file(&u, attempt, owner, now)
                };
            }
            if !changed {
                return Ok(());
            }
            let spec = ledger.to_spec(&schedule_name);
            let result = match &current {
                Some(obj) => {
                    let mut obj = obj.as_ref().clone();
                    obj.spec = spec;
                    api.replace(&name, &pp, &obj).await
                }
                None => {
                    let owner_ref = schedule
                        .controller_owner_ref(&())
                        .ok_or_else(|| missing::<Schedule>(schedule, "uid"))?;
                    let obj = SessionLedger {
                        metadata: ObjectMeta {
                            name: Some(name.clone()),
                            namespace: Some(ns.to_string()),
                            labels: Some(
                                [(LABEL_SCHEDULE.to_string(), schedule_name.clone())]
                                    .into_iter()
                                    .filter(|(_, v)| v.len() <= crate::api::LABEL_VALUE_MAX)
                                    .collect(),
                            ),
                            owner_references: Some(vec![owner_ref]),
                            ..ObjectMeta::default()
                        },
                        spec,
                    };
                    api.create(&pp, &obj).await
                }
            };
            match result {
                Ok(mut written) => {
                    super::trim::drop_managed_fields(&mut written.metadata);
                    self.ledgers_written
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(format!("{ns}/{name}"), Arc::new(written));
                    return Ok(());
                }
                // Someone wrote it meanwhile: merge into theirs.
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    debug!(ledger = %name, "ledger write conflict, merging again");
                    current = api.get_opt(&name).await?.map(Arc::new);
                }
                // Deleted since this process last saw it (by hand, as the
                // UnreadableLedger Warning advises, or with a Schedule of
                // the same name): the copy it remembers is gone for good,
                // so the month is written anew.
                Err(kube::Error::Api(e)) if e.code == 404 && current.is_some() => {
                    debug!(ledger = %name, "ledger deleted meanwhile, writing it anew");
                    self.ledgers_written
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&format!("{ns}/{name}"));
                    current = None;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::LedgerContended {
            name,
            attempts: ATTEMPTS,
        })
    }

    /// Deletes the months of `ledgers` (one Schedule's) that ended more
    /// than the retention ago.
    pub async fn prune_ledgers(&self, ledgers: &[Arc<SessionLedger>], now: i64) -> Result<()> {
        self.may_write("prune ledgers")?;
        let horizon = now - self.ledger_retention;
        for old in ledgers.iter().filter(|l| seconds(&l.spec.to) <= horizon) {
            let (ns, name) = (old.namespace().unwrap_or_default(), old.name_any());
            let key = format!("delete-ledger/{ns}/{name}");
            if self.recent.seen(&key, 0) {
                continue;
            }
            let api: Api<SessionLedger> = Api::namespaced(self.client.clone(), &ns);
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
            self.recent.record(key, 0);
        }
        Ok(())
    }
}
