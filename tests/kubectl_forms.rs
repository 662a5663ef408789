//! kubectl as people type it. Each kind answers to its singular, plural,
//! short and fully-qualified names, and the three kinds together to the
//! category `backfill-operator`: `get`, `describe` and `delete` with any
//! of them reach exactly the objects meant and no others. (With the
//! category `backfill` they had before, `kubectl get backfill NAME`
//! expanded `backfill` to all three kinds and failed with "you must
//! specify only one resource".)
//!
//! The real kubectl of the local control plane, with a discovery cache of
//! each test's own: a cache written before the CRDs last changed must not
//! answer (kubectl keeps one for hours). The operator does not run; the
//! objects are created directly, and every kind has objects of the same
//! names, so a form that reached the wrong kind would show.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{DynamicObject, ListParams, PostParams};
use serde_json::json;
use tempfile::TempDir;

use common::api::{
    Env, apply, apply_hourly, apply_hourly_backfill, ledgers, schedule_manifest, setup,
};
use common::helm::{run, run_ok};
use common::poll::eventually;
use common::{DEADLINE, client, install_crds};

/// The category of the three kinds.
const CATEGORY: &str = "backfill-operator";
const GROUP: &str = "backfill.dev";

/// One kind and the names kubectl knows it by.
struct Kind {
    kind: &'static str,
    singular: &'static str,
    plural: &'static str,
    short: &'static str,
}

const SCHEDULE: Kind = Kind {
    kind: "Schedule",
    singular: "schedule",
    plural: "schedules",
    short: "sched",
};
const BACKFILL: Kind = Kind {
    kind: "Backfill",
    singular: "backfill",
    plural: "backfills",
    short: "bf",
};
const LEDGER: Kind = Kind {
    kind: "SessionLedger",
    singular: "sessionledger",
    plural: "sessionledgers",
    short: "ledger",
};
const KINDS: [&Kind; 3] = [&SCHEDULE, &BACKFILL, &LEDGER];

impl Kind {
    /// Every form of its name, each with the name of the object a test
    /// reaches through it (one object per form, so each can be deleted).
    fn forms(&self) -> Vec<(String, &'static str)> {
        vec![
            (self.singular.to_string(), "by-singular"),
            (self.plural.to_string(), "by-plural"),
            (self.short.to_string(), "by-short"),
            (format!("{}.{GROUP}", self.plural), "by-plural-group"),
            (format!("{}.{GROUP}", self.singular), "by-singular-group"),
        ]
    }

    /// The object as `kubectl ... -o name` prints it.
    fn object(&self, name: &str) -> String {
        format!("{}.{GROUP}/{name}", self.kind.to_lowercase())
    }
}

/// Every object name the forms use.
fn names() -> Vec<&'static str> {
    SCHEDULE.forms().into_iter().map(|(_, name)| name).collect()
}

/// A test's namespace with the three APIs, and its kubectl.
struct World {
    env: Env,
    ledgers: Api<DynamicObject>,
    /// kubectl's discovery cache, this test's own.
    cache: TempDir,
}

impl World {
    /// A new namespace, once kubectl finds the three kinds, and only
    /// them, in the category.
    async fn new(prefix: &str) -> Self {
        let env = setup(prefix).await;
        let world = World {
            ledgers: ledgers(&env),
            env,
            cache: tempfile::tempdir().expect("a temporary directory"),
        };
        // The API server publishes a CRD's new names a moment after the
        // change; `api-resources` always asks it, and fills the cache.
        let want: BTreeSet<String> = KINDS
            .iter()
            .map(|k| format!("{}.{GROUP}", k.plural))
            .collect();
        eventually(
            &format!("kubectl to find {want:?} in the category {CATEGORY}"),
            DEADLINE,
            || async {
                let out = run(
                    "kubectl",
                    &[
                        "--cache-dir",
                        world.cache_dir(),
                        "api-resources",
                        "--categories",
                        CATEGORY,
                        "-o",
                        "name",
                    ],
                    None,
                );
                let got = lines(&out.stdout);
                if out.ok && got == want {
                    Ok(())
                } else {
                    Err(format!(
                        "{got:?} {}; the CRDs' categories: {}",
                        out.stderr.trim(),
                        crd_categories(&world.env.client).await
                    ))
                }
            },
        )
        .await;
        world
    }

    fn cache_dir(&self) -> &str {
        self.cache.path().to_str().expect("a UTF-8 path")
    }

    /// `kubectl <args> -n <namespace>`, which must succeed; its stdout.
    fn kubectl(&self, args: &[&str]) -> String {
        let mut all = vec!["--cache-dir", self.cache_dir(), "-n", &self.env.ns.name];
        all.extend_from_slice(args);
        run_ok("kubectl", &all, None)
    }

    /// The Schedule `hourly` and, of each kind, one object per form name.
    async fn populate(&self) {
        apply_hourly(&self.env, None).await;
        for name in names() {
            apply(
                &self.env.schedules,
                &schedule_manifest(name, "30 2 * * *", &[], json!({})),
            )
            .await;
            apply_hourly_backfill(
                &self.env,
                name,
                json!({"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z"}),
            )
            .await;
            apply(
                &self.ledgers,
                &json!({
                    "apiVersion": "backfill.dev/v1alpha1",
                    "kind": "SessionLedger",
                    "metadata": {"name": name},
                    "spec": {
                        "scheduleRef": {"name": "hourly"},
                        "period": "2026-01",
                        "from": "2026-01-01T00:00:00Z",
                        "to": "2026-02-01T00:00:00Z",
                    },
                }),
            )
            .await;
        }
    }

    /// The objects of the three kinds in the namespace, as the API (not
    /// kubectl) lists them, in `-o name` form.
    async fn objects(&self) -> BTreeSet<String> {
        let mut all = BTreeSet::new();
        for (kind, api) in [
            (&SCHEDULE, &self.env.schedules),
            (&BACKFILL, &self.env.backfills),
            (&LEDGER, &self.ledgers),
        ] {
            let list = api
                .list(&ListParams::default())
                .await
                .unwrap_or_else(|e| panic!("listing {}: {e}", kind.plural));
            all.extend(
                list.items
                    .iter()
                    .filter_map(|o| o.metadata.name.as_deref())
                    .map(|name| kind.object(name)),
            );
        }
        all
    }

    /// Waits until the namespace holds exactly `want`.
    async fn wait_objects(&self, want: &BTreeSet<String>, after: &str) {
        eventually(
            &format!("exactly {want:?} to be left after {after}"),
            DEADLINE,
            || async {
                let got = self.objects().await;
                if &got == want {
                    Ok(())
                } else {
                    Err(format!("{got:?}"))
                }
            },
        )
        .await;
    }
}

/// The categories each CRD in the cluster carries, to tell a slow API
/// server from CRDs that are not this tree's (another checkout's tests
/// applied theirs).
async fn crd_categories(client: &kube::Client) -> String {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut said = Vec::new();
    for kind in KINDS {
        let name = format!("{}.{GROUP}", kind.plural);
        let categories = match crds.get(&name).await {
            Ok(crd) => format!("{:?}", crd.spec.names.categories.unwrap_or_default()),
            Err(e) => e.to_string(),
        };
        said.push(format!("{name} {categories}"));
    }
    said.join(", ")
}

/// The non-empty lines of an output, trimmed.
fn lines(text: &str) -> BTreeSet<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// The objects `kubectl describe` described: each top-level `Name:` with
/// the top-level `Kind:` that follows it, in `-o name` form.
fn described(text: &str) -> Vec<String> {
    let mut name = None;
    let mut objects = Vec::new();
    for line in text.lines() {
        if let Some(value) = line.strip_prefix("Name:") {
            name = Some(value.trim().to_string());
        } else if let Some(kind) = line.strip_prefix("Kind:") {
            let name = name
                .take()
                .unwrap_or_else(|| panic!("a Kind before a Name:\n{text}"));
            objects.push(format!("{}.{GROUP}/{name}", kind.trim().to_lowercase()));
        }
    }
    objects
}

/// `kubectl get`, `describe` and `delete` with each form of `kind`'s
/// name, in a namespace where every kind has an object of each name.
async fn answers_to_each_of_its_names(kind: &Kind) {
    let world = World::new(&format!("kubectl-{}", kind.singular)).await;
    world.populate().await;
    let mut left = world.objects().await;
    assert_eq!(left.len(), 1 + 3 * names().len(), "{left:?}");

    for (form, name) in kind.forms() {
        let object = kind.object(name);
        let want = BTreeSet::from([object.clone()]);

        let got = world.kubectl(&["get", &form, name, "-o", "name"]);
        assert_eq!(
            lines(&got),
            want,
            "kubectl get {form} {name} -o name:\n{got}"
        );

        // The table: its header and one row, of that name.
        let table = world.kubectl(&["get", &form, name]);
        let rows: Vec<&str> = table.lines().filter(|l| !l.trim().is_empty()).collect();
        assert!(
            rows.len() == 2
                && rows[0].starts_with("NAME ")
                && rows[1].split_whitespace().next() == Some(name),
            "kubectl get {form} {name}:\n{table}"
        );

        let description = world.kubectl(&["describe", &form, name]);
        assert_eq!(
            described(&description),
            vec![object.clone()],
            "kubectl describe {form} {name}:\n{description}"
        );

        let deleted = world.kubectl(&["delete", &form, name, "-o", "name"]);
        assert_eq!(
            lines(&deleted),
            want,
            "kubectl delete {form} {name}:\n{deleted}"
        );
        left.remove(&object);
        world
            .wait_objects(&left, &format!("kubectl delete {form} {name}"))
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedule_answers_to_each_of_its_names() {
    answers_to_each_of_its_names(&SCHEDULE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_answers_to_each_of_its_names() {
    answers_to_each_of_its_names(&BACKFILL).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_ledger_answers_to_each_of_its_names() {
    answers_to_each_of_its_names(&LEDGER).await;
}

/// The category lists, describes and deletes the objects of all three
/// kinds in the namespace, and nothing else (a ConfigMap stays).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_category_reaches_all_three_kinds() {
    let world = World::new("kubectl-category").await;
    world.populate().await;
    let configmaps: Api<ConfigMap> = Api::namespaced(world.env.client.clone(), &world.env.ns.name);
    let bystander = ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some("by-singular".to_string()),
            ..Default::default()
        },
        ..Default::default()
    };
    configmaps
        .create(&PostParams::default(), &bystander)
        .await
        .unwrap_or_else(|e| panic!("creating the ConfigMap: {e}"));
    let all = world.objects().await;
    for kind in KINDS {
        assert!(
            all.iter().any(|o| o.starts_with(&kind.object(""))),
            "no {} in {all:?}",
            kind.kind
        );
    }

    let got = world.kubectl(&["get", CATEGORY, "-o", "name"]);
    assert_eq!(lines(&got), all, "kubectl get {CATEGORY} -o name:\n{got}");

    // The tables name each row `<kind>.<group>/<name>` when kinds mix.
    let tables = world.kubectl(&["get", CATEGORY]);
    let rows: BTreeSet<String> = tables
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|first| *first != "NAME")
        .map(str::to_string)
        .collect();
    assert_eq!(rows, all, "kubectl get {CATEGORY}:\n{tables}");

    let description = world.kubectl(&["describe", CATEGORY]);
    let described: BTreeSet<String> = described(&description).into_iter().collect();
    assert_eq!(
        described, all,
        "kubectl describe {CATEGORY}:\n{description}"
    );

    let deleted = world.kubectl(&["delete", CATEGORY, "--all", "-o", "name"]);
    assert_eq!(
        lines(&deleted),
        all,
        "kubectl delete {CATEGORY} --all:\n{deleted}"
    );
    world
        .wait_objects(
            &BTreeSet::new(),
            &format!("kubectl delete {CATEGORY} --all"),
        )
        .await;
    configmaps
        .get("by-singular")
        .await
        .unwrap_or_else(|e| panic!("the ConfigMap is gone after deleting the category: {e}"));
}

/// The CRDs carry the category, and nothing the API server serves is
/// named like it; no category in the cluster is named like one of the
/// kinds (which is what made `kubectl get backfill NAME` fail).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_category_shadows_no_name() {
    for (file, crd) in backfill_operator::crds::all() {
        let names = &crd.spec.names;
        assert_eq!(
            names.categories.as_deref(),
            Some(&[CATEGORY.to_string()][..]),
            "{file}"
        );
        let mut own = vec![names.plural.clone(), names.kind.to_lowercase()];
        own.extend(names.singular.clone());
        own.extend(names.short_names.iter().flatten().cloned());
        assert!(!own.iter().any(|n| n == CATEGORY), "{file}: {own:?}");
    }

    let client = client().await;
    install_crds(&client).await;
    let ours: BTreeSet<String> = KINDS
        .iter()
        .map(|k| format!("{} ({GROUP}/v1alpha1)", k.plural))
        .collect();
    // The API server publishes a CRD's new names a moment after the change.
    eventually(
        &format!("the API server to serve {ours:?} in the category {CATEGORY} only"),
        DEADLINE,
        || async {
            let (named, categories) = discover(&client).await;
            if let Some(owners) = named.get(CATEGORY) {
                return Err(format!("{CATEGORY} names {owners:?}"));
            }
            for kind in KINDS {
                for name in [kind.singular, kind.plural, kind.short] {
                    if let Some(members) = categories.get(name) {
                        return Err(format!(
                            "the category {name} shadows {}: it holds {members:?}",
                            kind.kind
                        ));
                    }
                }
            }
            match categories.get(CATEGORY) {
                Some(members) if *members == ours => Ok(()),
                other => Err(format!(
                    "the category {CATEGORY} holds {other:?}; the CRDs' categories: {}",
                    crd_categories(&client).await
                )),
            }
        },
    )
    .await;
}

/// A name to the resources it stands for.
type Index = BTreeMap<String, BTreeSet<String>>;

/// Every resource the API server serves (subresources aside): which
/// resources each name (plural, singular, short name) and each category
/// stands for, as `<plural> (<group/version>)`.
async fn discover(client: &kube::Client) -> (Index, Index) {
    let mut lists = Vec::new();
    let core = client
        .list_core_api_versions()
        .await
        .unwrap_or_else(|e| panic!("discovering the core API: {e}"));
    for version in &core.versions {
        lists.push(client.list_core_api_resources(version).await);
    }
    let groups = client
        .list_api_groups()
        .await
        .unwrap_or_else(|e| panic!("discovering the API groups: {e}"));
    for group in &groups.groups {
        for version in &group.versions {
            lists.push(
                client
                    .list_api_group_resources(&version.group_version)
                    .await,
            );
        }
    }
    let mut named = Index::new();
    let mut categories = Index::new();
    for list in lists {
        let list = list.unwrap_or_else(|e| panic!("discovering resources: {e}"));
        for resource in list.resources.iter().filter(|r| !r.name.contains('/')) {
            let id = format!("{} ({})", resource.name, list.group_version);
            let names = [resource.name.clone(), resource.singular_name.clone()]
                .into_iter()
                .chain(resource.short_names.iter().flatten().cloned());
            for name in names.filter(|n| !n.is_empty()) {
                named.entry(name).or_default().insert(id.clone());
            }
            for category in resource.categories.iter().flatten() {
                categories
                    .entry(category.clone())
                    .or_default()
                    .insert(id.clone());
            }
        }
    }
    (named, categories)
}
