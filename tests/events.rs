//! The operator's Event recorder against the real API server: a repeat is
//! counted into the first Event's `series`, a different message is an
//! Event of its own, and an Event deleted meanwhile is created anew.

mod common;

use backfill_operator::controller::events::{Occurrence, Recorder};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::{Resource, ResourceExt};

use common::{TestNamespace, client};

/// The Events of `ns`: (note, series count), oldest first.
async fn events(api: &Api<Event>) -> Vec<(String, Option<i32>)> {
    let mut list = api
        .list(&ListParams::default())
        .await
        .unwrap_or_else(|e| panic!("listing Events: {e}"))
        .items;
    list.sort_by_key(|e| e.event_time.as_ref().map(|t| t.0));
    list.into_iter()
        .map(|e| (e.note.unwrap_or_default(), e.series.map(|s| s.count)))
        .collect()
}

#[tokio::test]
async fn a_repeat_is_counted_and_another_message_is_another_event() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "events").await;
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
    let mut subject = ConfigMap::default();
    subject.metadata.name = Some("subject".into());
    let subject = configmaps
        .create(&PostParams::default(), &subject)
        .await
        .unwrap_or_else(|e| panic!("creating a ConfigMap: {e}"));
    let regarding = subject.object_ref(&());
    let api: Api<Event> = Api::namespaced(client.clone(), &ns.name);
    let recorder = Recorder::new(client.clone(), "backfill-operator");
    let stalled = Occurrence {
        warning: true,
        reason: "Stalled",
        note: "no Schedule nightly",
    };

    for _ in 0..3 {
        recorder.publish(&stalled, &regarding).await.unwrap();
    }
    assert_eq!(
        events(&api).await,
        [("no Schedule nightly".to_string(), Some(3))],
        "three publishes, one Event counted three times"
    );
    let first = api.list(&ListParams::default()).await.unwrap().items;
    let first = &first[0];
    assert_eq!(first.type_.as_deref(), Some("Warning"));
    assert_eq!(first.reason.as_deref(), Some("Stalled"));
    assert_eq!(
        first.regarding.as_ref().and_then(|r| r.uid.as_deref()),
        subject.uid().as_deref()
    );

    let other = Occurrence {
        note: "no Schedule weekly",
        ..stalled
    };
    recorder.publish(&other, &regarding).await.unwrap();
    assert_eq!(
        events(&api).await,
        [
            ("no Schedule nightly".to_string(), Some(3)),
            ("no Schedule weekly".to_string(), None),
        ],
        "another message is another Event, not a count on the first"
    );

    // Deleted meanwhile (by hand, or expired): the repeat is created anew.
    api.delete(&first.name_any(), &DeleteParams::default())
        .await
        .unwrap();
    recorder.publish(&stalled, &regarding).await.unwrap();
    assert_eq!(
        events(&api).await,
        [
            ("no Schedule weekly".to_string(), None),
            ("no Schedule nightly".to_string(), None),
        ]
    );
    assert_eq!(recorder.remembered(), 2);
}
