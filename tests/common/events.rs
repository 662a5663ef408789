//! The Events the operator emits about its objects.

use k8s_openapi::api::core::v1::Event;
use kube::Api;
use kube::api::ListParams;

use super::DEADLINE;
use super::api::Env;
use super::poll::eventually;

/// Events about the `kind` object `name` (core/v1 lists events.k8s.io
/// Events too): (type, reason, message).
pub async fn events_about(env: &Env, kind: &str, name: &str) -> Vec<(String, String, String)> {
    let api: Api<Event> = Api::namespaced(env.client.clone(), &env.ns.name);
    let list = api
        .list(&ListParams::default())
        .await
        .unwrap_or_else(|e| panic!("listing Events: {e}"));
    list.items
        .into_iter()
        .filter(|e| {
            e.involved_object.kind.as_deref() == Some(kind)
                && e.involved_object.name.as_deref() == Some(name)
        })
        .map(|e| {
            (
                e.type_.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.message.unwrap_or_default(),
            )
        })
        .collect()
}

/// Events about the Backfill `name`.
pub async fn events_of(env: &Env, name: &str) -> Vec<(String, String, String)> {
    events_about(env, "Backfill", name).await
}

/// Waits for a `type_` Event `reason` about the `kind` object `name`;
/// returns its message.
pub async fn wait_event_about(
    env: &Env,
    kind: &str,
    name: &str,
    type_: &str,
    reason: &str,
) -> String {
    eventually(
        &format!("a {type_} Event {reason} on {kind} {name}"),
        DEADLINE,
        || async {
            let events = events_about(env, kind, name).await;
            events
                .iter()
                .find(|(t, r, _)| t == type_ && r == reason)
                .map(|(_, _, m)| m.clone())
                .ok_or_else(|| format!("events so far: {events:?}"))
        },
    )
    .await
}

/// Waits for a `type_` Event `reason` about the Backfill `name`.
pub async fn wait_event(env: &Env, name: &str, type_: &str, reason: &str) -> String {
    wait_event_about(env, "Backfill", name, type_, reason).await
}

/// Asserts that a `type_` Event `reason` about the `kind` object `name` is
/// out already.
pub async fn assert_event_about(env: &Env, kind: &str, name: &str, type_: &str, reason: &str) {
    let events = events_about(env, kind, name).await;
    assert!(
        events.iter().any(|(t, r, _)| t == type_ && r == reason),
        "no {type_} Event {reason} on {kind} {name}: {events:?}"
    );
}
