//! Publishing Events (`events.k8s.io/v1`) about Schedules and Backfills.
//!
//! An Event that repeats within [`SERIES_TTL`] (same object, type, reason
//! and message) is not created again: the first one's `series` is patched
//! with the new count and time, as client-go's recorder does. To find
//! the first one, the recorder remembers each Event it created for that
//! long: a 64-bit hash of what makes it the same, its name and its
//! count, about 100 bytes, and at most [`MAX_SERIES`] of them. kube's
//! `Recorder` kept each whole Event with a copy of its key (about 2 KiB
//! each) and scanned all of them on every publish; with thousands of
//! objects reconciled at start that table was the largest thing the
//! operator held.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};

/// How long a repeat counts into the first Event's series (client-go's
/// and kube's six minutes); after that a repeat is a new Event.
pub const SERIES_TTL: Duration = Duration::from_secs(6 * 60);

/// Events remembered for their series at most. Past that (every one of
/// them younger than [`SERIES_TTL`]), a repeat is created as a new Event
/// instead of counted: nothing is lost but the count.
pub const MAX_SERIES: usize = 16_384;

/// Expired entries are swept at most this often, not on every publish;
/// a full table at most once a second.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
const SWEEP_FULL_EVERY: Duration = Duration::from_secs(1);

/// One Event to publish.
pub struct Occurrence<'a> {
    pub warning: bool,
    pub reason: &'a str,
    pub note: &'a str,
}

/// An Event this process created, remembered for its series.
struct Created {
    name: Box<str>,
    count: i32,
    last: Instant,
}

struct Table {
    created: HashMap<u64, Created>,
    swept: Instant,
}

impl Table {
    fn sweep(&mut self, now: Instant) {
        let since = now.duration_since(self.swept);
        let full = self.created.len() >= MAX_SERIES;
        if since < SWEEP_EVERY && !(full && since >= SWEEP_FULL_EVERY) {
            return;
        }
        self.created
            .retain(|_, c| now.duration_since(c.last) < SERIES_TTL);
        self.created.shrink_to_fit();
        self.swept = now;
    }

    /// Counts a repeat of `key` into its series, if it has a live one:
    /// the Event's name and its new count.
    fn repeat(&mut self, key: u64, now: Instant) -> Option<(Box<str>, i32)> {
        self.sweep(now);
        let created = self
            .created
            .get_mut(&key)
            .filter(|c| now.duration_since(c.last) < SERIES_TTL)?;
        created.count = created.count.saturating_add(1);
        created.last = now;
        Some((created.name.clone(), created.count))
    }

    fn remember(&mut self, key: u64, name: String, now: Instant) {
        self.sweep(now);
        if self.created.len() < MAX_SERIES || self.created.contains_key(&key) {
            self.created.insert(
                key,
                Created {
                    name: name.into_boxed_str(),
                    count: 1,
                    last: now,
                },
            );
        }
    }
}

/// Publishes Events as `controller`, counting repeats into series.
pub struct Recorder {
    client: Client,
    controller: String,
    table: Mutex<Table>,
}

impl Recorder {
    pub fn new(client: Client, controller: &str) -> Self {
        Recorder {
            client,
            controller: controller.to_string(),
            table: Mutex::new(Table {
                created: HashMap::new(),
                swept: Instant::now(),
            }),
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes `what` about the object `regarding`: a new Event, or the
    /// next count of the same Event published within [`SERIES_TTL`].
    pub async fn publish(
        &self,
        what: &Occurrence<'_>,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let key = series_key(what, regarding);
        let ns = regarding.namespace.as_deref().unwrap_or("default");
        let api: Api<Event> = Api::namespaced(self.client.clone(), ns);
        let repeat = self.table().repeat(key, Instant::now());
        if let Some((name, count)) = repeat {
            let series = EventSeries {
                count,
                last_observed_time: MicroTime(Timestamp::now()),
            };
            let patch = serde_json::json!({ "series": series });
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => return Ok(()),
                // Deleted meanwhile (expired, or by hand): a new one.
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        let event = self.event(what, regarding, ns);
        let name = event.metadata.name.clone().unwrap_or_default();
        api.create(&PostParams::default(), &event).await?;
        self.table().remember(key, name, Instant::now());
        Ok(())
    }

    fn event(&self, what: &Occurrence<'_>, regarding: &ObjectReference, ns: &str) -> Event {
        let now = Timestamp::now();
        Event {
            metadata: ObjectMeta {
                name: Some(format!(
                    "{}.{:x}",
                    regarding.name.as_deref().unwrap_or(&self.controller),
                    now.as_nanosecond()
                )),
                namespace: Some(ns.to_string()),
                ..ObjectMeta::default()
            },
            action: Some(what.reason.to_string()),
            reason: Some(what.reason.to_string()),
            note: Some(what.note.to_string()),
            type_: Some(if what.warning { "Warning" } else { "Normal" }.to_string()),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.controller.clone()),
            ..Event::default()
        }
    }

    /// Events remembered for their series now (for tests and metrics).
    pub fn remembered(&self) -> usize {
        self.table().created.len()
    }
}

/// What makes two Events the same one: the object (by kind, namespace,
/// name and uid: a new object of the same name is another), the type,
/// the reason and the message. A different message is a new Event, so
/// `kubectl describe` never shows an old message under a new count.
fn series_key(what: &Occurrence<'_>, regarding: &ObjectReference) -> u64 {
    let mut h = DefaultHasher::new();
    (
        &regarding.api_version,
        &regarding.kind,
        &regarding.namespace,
        &regarding.name,
        &regarding.uid,
    )
        .hash(&mut h);
    (what.warning, what.reason, what.note).hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(name: &str, uid: &str) -> ObjectReference {
        ObjectReference {
            api_version: Some("backfill.dev/v1alpha1".into()),
            kind: Some("Backfill".into()),
            namespace: Some("ns".into()),
            name: Some(name.into()),
            uid: Some(uid.into()),
            ..ObjectReference::default()
        }
    }

    fn table() -> Table {
        Table {
            created: HashMap::new(),
            swept: Instant::now(),
        }
    }

    const STALLED: Occurrence<'static> = Occurrence {
        warning: true,
        reason: "Stalled",
        note: "no such Schedule",
    };

    #[test]
    fn the_same_event_is_one_key_and_any_difference_another() {
        let a = reference("a", "u1");
        let key = series_key(&STALLED, &a);
        assert_eq!(key, series_key(&STALLED, &a.clone()));
        let others = [
            series_key(&STALLED, &reference("b", "u1")),
            series_key(&STALLED, &reference("a", "u2")),
            series_key(
                &Occurrence {
                    note: "another message",
                    ..STALLED
                },
                &a,
            ),
            series_key(
                &Occurrence {
                    warning: false,
                    ..STALLED
                },
                &a,
            ),
            series_key(
                &Occurrence {
                    reason: "Invalid",
                    ..STALLED
                },
                &a,
            ),
        ];
        assert!(others.iter().all(|k| *k != key), "{others:?} vs {key}");
    }

    #[test]
    fn a_repeat_counts_into_the_first_event_until_it_expires() {
        let mut t = table();
        let start = Instant::now();
        assert_eq!(t.repeat(1, start), None, "nothing published yet");
        t.remember(1, "a.1".into(), start);
        assert_eq!(
            t.repeat(1, start + Duration::from_secs(1)),
            Some(("a.1".into(), 2))
        );
        assert_eq!(
            t.repeat(1, start + Duration::from_secs(2)),
            Some(("a.1".into(), 3))
        );
        // The series lives SERIES_TTL from its last repeat.
        assert_eq!(
            t.repeat(1, start + Duration::from_secs(2) + SERIES_TTL),
            None
        );
        // Published anew, it starts a new series.
        t.remember(1, "a.2".into(), start + SERIES_TTL * 2);
        assert_eq!(t.repeat(1, start + SERIES_TTL * 2), Some(("a.2".into(), 2)));
    }

    #[test]
    fn expired_events_are_swept_and_the_table_stays_bounded() {
        let mut t = table();
        let start = t.swept;
        for key in 0..MAX_SERIES as u64 + 10 {
            t.remember(key, format!("e.{key}"), start);
        }
        assert_eq!(t.created.len(), MAX_SERIES, "full: no more are kept");
        // A full table of live Events: a new one is not remembered, an old
        // one still counts.
        assert_eq!(t.repeat(u64::MAX, start), None);
        assert_eq!(t.repeat(0, start), Some(("e.0".into(), 2)));
        // Once they expire, the next publish sweeps them.
        let later = start + SERIES_TTL + SWEEP_EVERY;
        t.remember(u64::MAX, "new".into(), later);
        assert_eq!(t.created.len(), 1);
        assert!(t.created.capacity() < MAX_SERIES);
    }
}
