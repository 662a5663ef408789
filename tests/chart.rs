//! The Helm chart (`charts/backfill-operator`): it lints, its schema
//! refuses bad values, what it renders is accepted by the API server and
//! meets the Pod Security Standard "restricted", and the RBAC it grants is
//! exactly what the operator needs: the operator binary, run with nothing
//! but the chart's ServiceAccount token, takes a Schedule and a Backfill
//! to completion without one "forbidden". `helm uninstall` keeps the CRDs;
//! its pre-delete hook runs `release-finalizers` for the watched namespaces
//! (rendered here; `tests/uninstall.rs` runs it).
//!
//! helm and kubectl are the local control plane's (`.cluster/bin`, else
//! `PATH`); they talk to `KUBECONFIG`, else `.cluster/kubeconfig`.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
};
use serde::Deserialize;
use serde_json::{Value, json};

use common::accounts::{can_i, service_account_kubeconfig, wait_can_i};
use common::api::{
    Env, apply, apply_hourly, apply_hourly_backfill, get, ledgers, patch_spec, schedule_manifest,
    setup,
};
use common::helm::{Release, chart, chart_yaml, run, run_ok};
use common::operator::Operator;
use common::poll::eventually;
use common::status::{RUN_DEADLINE, counter, phase, status, summary, wait_finished};
use common::{DEADLINE, FIELD_MANAGER, TestNamespace, client, install_crds};

const CRDS: [&str; 3] = [
    "schedules.backfill.dev",
    "backfills.backfill.dev",
    "sessionledgers.backfill.dev",
];

/// Every rule the chart grants on the watched namespace(s): (API group,
/// resource, verbs). Each verb is one a code path in `src/controller/`
/// uses; the chart's comments say which.
const RULES: &[(&str, &str, &[&str])] = &[
    ("backfill.dev", "schedules", &["get", "list", "watch"]),
    (
        "backfill.dev",
        "backfills",
        &["get", "list", "watch", "create"],
    ),
    ("backfill.dev", "schedules/status", &["patch"]),
    ("backfill.dev", "backfills/status", &["patch"]),
    (
        "backfill.dev",
        "sessionledgers",
        &["get", "list", "watch", "create", "update", "delete"],
    ),
    (
        "batch",
        "jobs",
        &["list", "watch", "create", "delete", "patch"],
    ),
    ("events.k8s.io", "events", &["create", "patch"]),
];

/// The leader-election rule, in the release namespace only.
const LEASE_RULE: (&str, &str, &[&str]) = (
    "coordination.k8s.io",
    "leases",
    &["get", "create", "update"],
);

// ---------------------------------------------------------------------
// helm and kubectl
// ---------------------------------------------------------------------

/// `helm template <release> <chart> -n <ns> --set ...`.
fn template(release: &str, ns: &str, sets: &[&str]) -> String {
    let chart = chart();
    let mut args = vec![
        "template",
        release,
        chart.to_str().expect("a UTF-8 path"),
        "-n",
        ns,
    ];
    for set in sets {
        args.extend(["--set", set]);
    }
    run_ok("helm", &args, None)
}

/// The documents of a YAML stream.
fn docs(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("bad YAML: {e}\n{text}")))
        .filter(|doc| !doc.is_null())
        .collect()
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn one<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    match of_kind(docs, kind).as_slice() {
        [doc] => doc,
        found => panic!("expected one {kind}, found {}", found.len()),
    }
}

fn kinds(docs: &[Value]) -> BTreeSet<String> {
    docs.iter()
        .map(|d| d["kind"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {value}"))
        .iter()
        .map(|v| v.as_str().expect("a string").to_string())
        .collect()
}

/// A Role's or ClusterRole's rules as (group, resource, sorted verbs).
fn rules_of(role: &Value) -> BTreeSet<(String, String, Vec<String>)> {
    let mut rules = BTreeSet::new();
    for rule in role["rules"].as_array().expect("rules") {
        assert!(
            rule.get("resourceNames").is_none() && rule.get("nonResourceURLs").is_none(),
            "unexpected rule {rule}"
        );
        let mut verbs = strings(&rule["verbs"]);
        verbs.sort();
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                rules.insert((group.clone(), resource, verbs.clone()));
            }
        }
    }
    rules
}

fn expected(rules: &[(&str, &str, &[&str])]) -> BTreeSet<(String, String, Vec<String>)> {
    rules
        .iter()
        .map(|(group, resource, verbs)| {
            let mut verbs: Vec<String> = verbs.iter().map(|v| v.to_string()).collect();
            verbs.sort();
            (group.to_string(), resource.to_string(), verbs)
        })
        .collect()
}

/// The API server's answer to "may `user` do `verb` on `group`/`resource`
/// in `ns`?", through a SubjectAccessReview.
async fn allowed(
    client: &kube::Client,
    user: &str,
    verb: &str,
    group: &str,
    resource: &str,
    ns: &str,
) -> bool {
    let (resource, subresource) = match resource.split_once('/') {
        Some((r, s)) => (r, Some(s.to_string())),
        None => (resource, None),
    };
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.to_string()),
            groups: Some(vec![
                "system:serviceaccounts".to_string(),
                format!(
                    "system:serviceaccounts:{}",
                    user.split(':').nth(2).unwrap_or_default()
                ),
                "system:authenticated".to_string(),
            ]),
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(ns.to_string()),
                verb: Some(verb.to_string()),
                group: Some(group.to_string()),
                resource: Some(resource.to_string()),
                subresource,
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<SubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .unwrap_or_else(|e| panic!("SubjectAccessReview: {e}"))
        .status
        .is_some_and(|s| s.allowed)
}

/// The flags `backfill-operator run` accepts, from its help.
fn operator_run_help() -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_backfill-operator"))
        .args(["run", "--help"])
        .output()
        .expect("running backfill-operator run --help");
    assert!(out.status.success(), "backfill-operator run --help failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn container(docs: &[Value]) -> &Value {
    let deployment = one(docs, "Deployment");
    match deployment["spec"]["template"]["spec"]["containers"].as_array() {
        Some(containers) if containers.len() == 1 => &containers[0],
        other => panic!("expected one container, found {other:?}"),
    }
}

/// The pre-delete hook's Job, rendered.
fn hook_job(docs: &[Value]) -> &Value {
    let jobs = of_kind(docs, "Job");
    match jobs.as_slice() {
        [job] if job["metadata"]["annotations"]["helm.sh/hook"] == "pre-delete" => job,
        found => panic!("expected one pre-delete hook Job, found {found:?}"),
    }
}

fn hook_container(docs: &[Value]) -> &Value {
    match hook_job(docs)["spec"]["template"]["spec"]["containers"].as_array() {
        Some(containers) if containers.len() == 1 => &containers[0],
        other => panic!("expected one container in the hook, found {other:?}"),
    }
}

// ---------------------------------------------------------------------
// Without a cluster
// ---------------------------------------------------------------------

/// `helm lint` (also `--strict`) passes with the defaults and with every
/// optional part on; values.schema.json refuses a bad enum value, unknown
/// keys at the top and in nested objects, and two replicas without leader
/// election.
#[test]
fn chart_lints_and_its_schema_refuses_bad_values() {
    let chart = chart();
    let chart = chart.to_str().expect("a UTF-8 path");
    run_ok("helm", &["lint", chart], None);
    run_ok("helm", &["lint", "--strict", chart], None);
    run_ok(
        "helm",
        &[
            "lint",
            "--strict",
            chart,
            "--set",
            "watchNamespaces={team-a,team-b},metrics.serviceMonitor.enabled=true,podDisruptionBudget.enabled=true,replicaCount=2,logFormat=text",
        ],
        None,
    );

    let refused = |set: &str, says: &str| {
        let out = run("helm", &["template", "t", chart, "--set", set], None);
        assert!(!out.ok, "--set {set} was accepted:\n{}", out.stdout);
        assert!(
            out.stderr.contains(says),
            "--set {set}: expected an error saying {says:?}, got:\n{}",
            out.stderr
        );
        let lint = run("helm", &["lint", "--strict", chart, "--set", set], None);
        assert!(!lint.ok, "helm lint accepted --set {set}");
    };
    refused("logFormat=xml", "/logFormat");
    refused(
        "logLevel=debug",
        "additional properties 'logLevel' not allowed",
    );
    refused(
        "image.digest=sha256:0",
        "additional properties 'digest' not allowed",
    );
    refused(
        "leaderElection.leaseName=x",
        "additional properties 'leaseName' not allowed",
    );
    refused("watchNamespace=Not_A_Namespace", "/watchNamespace");
    refused("watchNamespaces={ok,Not_A_Namespace}", "/watchNamespaces/1");
    refused("watchNamespaces={a,a}", "/watchNamespaces");
    refused("watchNamespaces=team-a", "/watchNamespaces");
    refused("ledgerRetentionDays=0", "/ledgerRetentionDays");
    refused("ledgerBatch=65", "/ledgerBatch");
    refused("metrics.port=0", "/metrics/port");
    refused(
        "uninstall.cleanup=true",
        "additional properties 'cleanup' not allowed",
    );
    refused(
        "uninstall.activeDeadlineSeconds=0",
        "/uninstall/activeDeadlineSeconds",
    );
    refused(
        "replicaCount=2,leaderElection.enabled=false",
        "/replicaCount",
    );
}

/// The Deployment passes the flags and environment the operator takes,
/// from the values; `--namespace` only with watchNamespaces (and the 0.1
/// chart's watchNamespace, merged in), `--leader-elect` only when enabled. Every flag is one `backfill-operator run` has.
#[test]
fn deployment_passes_the_values_as_flags() {
    let defaults = docs(&template("bfo", "ops", &[]));
    let c = container(&defaults);
    assert_eq!(
        strings(&c["args"]),
        [
            "run",
            "--log-format=json",
            "--listen-address=0.0.0.0:8080",
            "--leader-elect",
            "--ledger-retention-days=400",
            "--ledger-batch=64",
            "--kube-api-qps=200",
            "--kube-api-burst=400",
            "--concurrent-schedule-syncs=64",
            "--concurrent-backfill-syncs=64",
        ]
    );
    assert_eq!(
        c["image"],
        format!(
            "ghcr.io/backfill-dev/backfill-operator:{}",
            chart_yaml()["appVersion"].as_str().expect("an appVersion")
        ),
        "the tag defaults to the appVersion"
    );
    assert_eq!(
        chart_yaml()["appVersion"],
        env!("CARGO_PKG_VERSION"),
        "the chart's appVersion is the crate's version, the tag `make image` builds"
    );
    let env: Vec<(String, String)> = c["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap_or_default().to_string(),
                e["valueFrom"]["fieldRef"]["fieldPath"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(
        env,
        [
            ("POD_NAME".to_string(), "metadata.name".to_string()),
            (
                "POD_NAMESPACE".to_string(),
                "metadata.namespace".to_string()
            ),
        ]
    );
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["ports"][0]["containerPort"], 8080);
    assert_eq!(c["resources"]["requests"]["cpu"], "100m");
    assert_eq!(c["resources"]["requests"]["memory"], "128Mi");
    assert_eq!(c["resources"]["limits"]["memory"], "512Mi");
    assert_eq!(one(&defaults, "Deployment")["spec"]["replicas"], 1);
    let service = one(&defaults, "Service");
    assert_eq!(service["spec"]["ports"][0]["port"], 8080);
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "metrics");
    for absent in ["ServiceMonitor", "PodDisruptionBudget"] {
        assert!(
            of_kind(&defaults, absent).is_empty(),
            "{absent} is rendered by default"
        );
    }

    let custom = docs(&template(
        "bfo",
        "ops",
        &[
            "logFormat=text",
            "metrics.port=9090",
            "leaderElection.enabled=false",
            "ledgerRetentionDays=30",
            "ledgerBatch=8",
            "kubeApi.qps=50",
            "kubeApi.burst=100",
            "concurrency.schedules=8",
            "concurrency.backfills=4",
            "watchNamespace=team-a",
            "image.tag=1.2.3",
            "image.pullPolicy=Always",
            "priorityClassName=critical",
            "nodeSelector.pool=ops",
            "podLabels.team=data",
            "podAnnotations.note=x",
            "imagePullSecrets[0].name=registry",
        ],
    ));
    let c = container(&custom);
    assert_eq!(
        strings(&c["args"]),
        [
            "run",
            "--log-format=text",
            "--listen-address=0.0.0.0:9090",
            "--ledger-retention-days=30",
            "--ledger-batch=8",
            "--kube-api-qps=50",
            "--kube-api-burst=100",
            "--concurrent-schedule-syncs=8",
            "--concurrent-backfill-syncs=4",
            "--namespace=team-a",
        ]
    );
    assert_eq!(c["image"], "ghcr.io/backfill-dev/backfill-operator:1.2.3");
    for (sets, flag) in [
        (
            &["watchNamespaces={team-a,team-b}"][..],
            "--namespace=team-a,team-b",
        ),
        (
            &["watchNamespaces={team-a,team-b}", "watchNamespace=team-c"][..],
            "--namespace=team-a,team-b,team-c",
        ),
        (
            &["watchNamespaces={team-a}", "watchNamespace=team-a"][..],
            "--namespace=team-a",
        ),
    ] {
        let args = strings(&container(&docs(&template("bfo", "ops", sets)))["args"]);
        assert_eq!(args.last().map(String::as_str), Some(flag), "{sets:?}");
    }
    assert_eq!(c["imagePullPolicy"], "Always");
    let deployment = one(&custom, "Deployment");
    let pod = &deployment["spec"]["template"];
    assert_eq!(deployment["spec"]["strategy"]["type"], "Recreate");
    assert_eq!(pod["spec"]["priorityClassName"], "critical");
    assert_eq!(pod["spec"]["nodeSelector"]["pool"], "ops");
    assert_eq!(pod["spec"]["imagePullSecrets"][0]["name"], "registry");
    assert_eq!(pod["metadata"]["labels"]["team"], "data");
    assert_eq!(pod["metadata"]["annotations"]["note"], "x");
    assert_eq!(
        deployment["spec"]["selector"]["matchLabels"]
            .as_object()
            .map(|m| m.len()),
        Some(2),
        "pod labels stay out of the (immutable) selector"
    );

    let help = operator_run_help();
    for args in [strings(&container(&defaults)["args"]), strings(&c["args"])] {
        for arg in args.iter().skip(1) {
            let flag = arg.split('=').next().unwrap_or_default();
            assert!(
                help.contains(flag),
                "the chart passes {flag}, which `backfill-operator run` does not take:\n{help}"
            );
        }
    }
    assert!(
        help.contains("possible values: text, json"),
        "logFormat's values (text, json) are no longer the binary's:\n{help}"
    );
}

/// The rules rendered are exactly `RULES` (a ClusterRole cluster-wide, a
/// Role in each watched namespace otherwise), plus the Lease rule in the
/// release namespace when leader election is on.
#[test]
fn rbac_grants_exactly_the_rules_the_code_needs() {
    let cluster_wide = docs(&template("bfo", "ops", &[]));
    let cluster_role = one(&cluster_wide, "ClusterRole");
    assert_eq!(rules_of(cluster_role), expected(RULES));
    let binding = one(&cluster_wide, "ClusterRoleBinding");
    assert_eq!(binding["subjects"][0]["name"], "bfo-backfill-operator");
    assert_eq!(binding["subjects"][0]["namespace"], "ops");
    let lease_role = one(&cluster_wide, "Role");
    assert_eq!(lease_role["metadata"]["namespace"], "ops");
    assert_eq!(rules_of(lease_role), expected(&[LEASE_RULE]));

    let namespaced = docs(&template("bfo", "ops", &["watchNamespace=team-a"]));
    assert!(of_kind(&namespaced, "ClusterRole").is_empty());
    assert!(of_kind(&namespaced, "ClusterRoleBinding").is_empty());
    let roles = of_kind(&namespaced, "Role");
    let watched = roles
        .iter()
        .find(|r| r["metadata"]["namespace"] == "team-a")
        .expect("a Role in the watched namespace");
    assert_eq!(rules_of(watched), expected(RULES));
    let lease = roles
        .iter()
        .find(|r| r["metadata"]["namespace"] == "ops")
        .expect("the leader-election Role in the release namespace");
    assert_eq!(rules_of(lease), expected(&[LEASE_RULE]));
    let bindings = of_kind(&namespaced, "RoleBinding");
    assert_eq!(bindings.len(), 2);
    for b in bindings {
        assert_eq!(b["subjects"][0]["namespace"], "ops");
    }

    let listed = docs(&template(
        "bfo",
        "ops",
        &["watchNamespaces={team-a,team-b}", "watchNamespace=team-c"],
    ));
    assert!(of_kind(&listed, "ClusterRole").is_empty());
    assert!(of_kind(&listed, "ClusterRoleBinding").is_empty());
    let mut places: Vec<String> = of_kind(&listed, "Role")
        .iter()
        .filter(|r| rules_of(r) == expected(RULES))
        .map(|r| {
            r["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    places.sort();
    assert_eq!(places, ["team-a", "team-b", "team-c"]);
    let mut bound: Vec<String> = of_kind(&listed, "RoleBinding")
        .iter()
        .map(|b| {
            b["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    bound.sort();
    assert_eq!(bound, ["ops", "team-a", "team-b", "team-c"]);

    let no_leader = docs(&template("bfo", "ops", &["leaderElection.enabled=false"]));
    assert!(of_kind(&no_leader, "Role").is_empty());
    assert!(of_kind(&no_leader, "RoleBinding").is_empty());

    let no_sa = docs(&template(
        "bfo",
        "ops",
        &[
            "serviceAccount.create=false",
            "serviceAccount.name=existing",
        ],
    ));
    assert!(of_kind(&no_sa, "ServiceAccount").is_empty());
    assert_eq!(
        one(&no_sa, "ClusterRoleBinding")["subjects"][0]["name"],
        "existing"
    );
}

/// `api.enabled`: the operator serves the API over HTTPS from the named
/// TLS Secret (mounted whole, so renewals reach it), a Service in front,
/// and RBAC for TokenReviews and SubjectAccessReviews (cluster-scoped,
/// also with watchNamespaces) and patch on backfills; none of it when
/// off; no Secret named, no install.
#[test]
fn api_values_serve_the_public_api_with_its_rbac() {
    let on = ["api.enabled=true", "api.tls.secretName=api-tls"];
    let docs_on = docs(&template("bfo", "ops", &on));
    let c = container(&docs_on);
    let args = strings(&c["args"]);
    for want in [
        "--api-address=0.0.0.0:8443",
        "--api-tls-cert-file=/etc/backfill-operator/api-tls/tls.crt",
        "--api-tls-key-file=/etc/backfill-operator/api-tls/tls.key",
        "--api-rate-limit=20",
        "--api-rate-burst=40",
    ] {
        assert!(args.contains(&want.to_string()), "{want} missing: {args:?}");
    }
    // Every flag the chart passes is one the binary takes.
    let help = operator_run_help();
    for flag in [
        "--api-address",
        "--api-tls-cert-file",
        "--api-tls-key-file",
        "--api-rate-limit",
        "--api-rate-burst",
    ] {
        assert!(help.contains(flag), "{flag} is not a flag of `run`");
    }
    assert_eq!(
        c["volumeMounts"][0]["mountPath"],
        "/etc/backfill-operator/api-tls"
    );
    assert!(c["volumeMounts"][0].get("subPath").is_none());
    let deployment = one(&docs_on, "Deployment");
    assert_eq!(
        deployment["spec"]["template"]["spec"]["volumes"][0]["secret"]["secretName"],
        "api-tls"
    );
    let api_service = of_kind(&docs_on, "Service")
        .into_iter()
        .find(|s| s["metadata"]["name"] == "bfo-backfill-operator-api")
        .expect("the API's Service");
    assert_eq!(api_service["spec"]["ports"][0]["port"], 443);
    assert_eq!(api_service["spec"]["ports"][0]["targetPort"], "api");
    let api_role = of_kind(&docs_on, "ClusterRole")
        .into_iter()
        .find(|r| r["metadata"]["name"] == "bfo-backfill-operator-api")
        .expect("the API's ClusterRole");
    assert_eq!(
        rules_of(api_role),
        expected(&[
            ("authentication.k8s.io", "tokenreviews", &["create"]),
            ("authorization.k8s.io", "subjectaccessreviews", &["create"]),
        ])
    );
    let main = of_kind(&docs_on, "ClusterRole")
        .into_iter()
        .find(|r| r["metadata"]["name"] == "bfo-backfill-operator")
        .expect("the operator's ClusterRole");
    assert!(
        rules_of(main).contains(&(
            "backfill.dev".to_string(),
            "backfills".to_string(),
            ["create", "get", "list", "patch", "watch"]
                .map(String::from)
                .to_vec()
        )),
        "{:?}",
        rules_of(main)
    );
    // Namespaced: the reviews stay cluster-wide, nothing else does.
    let narrow = docs(&template(
        "bfo",
        "ops",
        &[on[0], on[1], "watchNamespaces={team-a}"],
    ));
    let roles = of_kind(&narrow, "ClusterRole");
    assert_eq!(roles.len(), 1);
    assert_eq!(roles[0]["metadata"]["name"], "bfo-backfill-operator-api");

    let off = docs(&template("bfo", "ops", &[]));
    assert!(
        !strings(&container(&off)["args"])
            .iter()
            .any(|a| a.starts_with("--api"))
    );
    assert!(
        of_kind(&off, "Service")
            .iter()
            .all(|s| s["metadata"]["name"] != "bfo-backfill-operator-api")
    );
    let chart = chart();
    let out = run(
        "helm",
        &[
            "template",
            "t",
            chart.to_str().expect("UTF-8"),
            "--set",
            "api.enabled=true",
        ],
        None,
    );
    assert!(
        !out.ok && out.stderr.contains("api.tls.secretName"),
        "{}",
        out.stderr
    );
}

/// The pod meets "restricted" field by field.
#[test]
fn deployment_sets_the_restricted_security_context() {
    let rendered = docs(&template("bfo", "ops", &[]));
    let pod = &one(&rendered, "Deployment")["spec"]["template"]["spec"];
    assert_eq!(pod["automountServiceAccountToken"], true);
    let p = &pod["securityContext"];
    assert_eq!(p["runAsNonRoot"], true);
    assert_eq!(p["runAsUser"], 65532);
    assert_eq!(p["runAsGroup"], 65532);
    assert_eq!(p["seccompProfile"]["type"], "RuntimeDefault");
    let c = &container(&rendered)["securityContext"];
    assert_eq!(c["runAsNonRoot"], true);
    assert_eq!(c["runAsUser"], 65532);
    assert_eq!(c["runAsGroup"], 65532);
    assert_eq!(c["readOnlyRootFilesystem"], true);
    assert_eq!(c["allowPrivilegeEscalation"], false);
    assert_eq!(c["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(c["seccompProfile"]["type"], "RuntimeDefault");
    assert!(c.get("privileged").is_none_or(|v| v == false));
    assert!(pod.get("hostNetwork").is_none() && pod.get("volumes").is_none());

    // The uninstall hook's pod has the same contexts.
    let hook = &hook_job(&rendered)["spec"]["template"]["spec"];
    assert_eq!(hook["securityContext"], pod["securityContext"]);
    assert_eq!(hook_container(&rendered)["securityContext"], *c);
    assert_eq!(hook["automountServiceAccountToken"], true);
    assert!(hook.get("hostNetwork").is_none() && hook.get("volumes").is_none());
}

/// The pre-delete hook runs `release-finalizers` for the namespaces the
/// Deployment watches (every namespace by default), with the operator's
/// ServiceAccount, whose RBAC lists and patches Jobs there. It is bounded
/// (backoffLimit, activeDeadlineSeconds), deleted before a new one and
/// once it succeeded, its pod is not selected by the Deployment's Service,
/// and `uninstall.releaseFinalizers=false` leaves it out. Every flag is one
/// `backfill-operator release-finalizers` takes.
#[test]
fn uninstall_hook_releases_the_finalizers_of_the_watched_namespaces() {
    let defaults = docs(&template("bfo", "ops", &[]));
    let job = hook_job(&defaults);
    let annotations = &job["metadata"]["annotations"];
    assert_eq!(
        annotations["helm.sh/hook-delete-policy"],
        "before-hook-creation,hook-succeeded"
    );
    assert_eq!(job["metadata"]["namespace"], "ops");
    assert_eq!(job["spec"]["backoffLimit"], 2);
    assert_eq!(job["spec"]["activeDeadlineSeconds"], 120);
    let pod = &job["spec"]["template"];
    assert_eq!(pod["spec"]["restartPolicy"], "Never");
    assert_eq!(
        pod["spec"]["serviceAccountName"],
        one(&defaults, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"]
    );
    let c = hook_container(&defaults);
    assert_eq!(c["image"], container(&defaults)["image"]);
    assert!(
        c.get("command").is_none(),
        "the image's entrypoint is the binary"
    );
    assert_eq!(
        strings(&c["args"]),
        ["release-finalizers", "--all-namespaces"]
    );
    let service = one(&defaults, "Service");
    let selector = service["spec"]["selector"].as_object().expect("a selector");
    assert!(
        !selector
            .iter()
            .all(|(k, v)| pod["metadata"]["labels"][k] == *v),
        "the metrics Service selects the hook's pod"
    );

    let listed = docs(&template(
        "bfo",
        "ops",
        &[
            "watchNamespaces={team-a,team-b}",
            "watchNamespace=team-c",
            "uninstall.backoffLimit=0",
            "uninstall.activeDeadlineSeconds=30",
            "uninstall.podAnnotations.note=x",
            "serviceAccount.create=false",
            "serviceAccount.name=existing",
        ],
    ));
    let job = hook_job(&listed);
    assert_eq!(job["spec"]["backoffLimit"], 0);
    assert_eq!(job["spec"]["activeDeadlineSeconds"], 30);
    assert_eq!(
        job["spec"]["template"]["metadata"]["annotations"]["note"],
        "x"
    );
    assert_eq!(
        job["spec"]["template"]["spec"]["serviceAccountName"],
        "existing"
    );
    let args = strings(&hook_container(&listed)["args"]);
    assert_eq!(
        args,
        ["release-finalizers", "--namespace=team-a,team-b,team-c"]
    );
    assert_eq!(
        strings(&container(&listed)["args"]).last(),
        args.last(),
        "the hook releases the namespaces the operator watches"
    );

    let long = docs(&template(
        "bfo",
        "ops",
        &[&format!("fullnameOverride={}", "a".repeat(63))],
    ));
    let name = hook_job(&long)["metadata"]["name"]
        .as_str()
        .expect("a name");
    assert!(name.len() <= 63, "{name}");

    let off = docs(&template(
        "bfo",
        "ops",
        &["uninstall.releaseFinalizers=false"],
    ));
    assert!(of_kind(&off, "Job").is_empty());

    let out = Command::new(env!("CARGO_BIN_EXE_backfill-operator"))
        .args(["release-finalizers", "--help"])
        .output()
        .expect("running backfill-operator release-finalizers --help");
    let help = String::from_utf8_lossy(&out.stdout);
    for arg in strings(&hook_container(&defaults)["args"])
        .iter()
        .chain(&args)
        .skip(1)
    {
        let flag = arg.split('=').next().unwrap_or_default();
        if flag != "release-finalizers" {
            assert!(help.contains(flag), "the hook passes {flag}:\n{help}");
        }
    }
}

// ---------------------------------------------------------------------
// Against the control plane
// ---------------------------------------------------------------------

/// Everything `helm template` renders is accepted by the API server
/// (server-side dry run): the defaults, with watchNamespace (another
/// namespace), and with the PodDisruptionBudget on. The ServiceMonitor
/// goes in too when the cluster has its CRD; the test control plane does
/// not, so it is left out of the dry run, and said so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendered_manifests_pass_a_server_side_dry_run() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "chart-dry-run").await;
    let watched = TestNamespace::new(&client, "chart-dry-run-watched").await;
    let release = format!("dr-{}", &ns.name[ns.name.len() - 8..]);

    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let service_monitor_crd = crds
        .get_opt("servicemonitors.monitoring.coreos.com")
        .await
        .unwrap_or_else(|e| panic!("reading CRDs: {e}"))
        .is_some();
    let mut optional = vec![
        "podDisruptionBudget.enabled=true".to_string(),
        "api.enabled=true".to_string(),
        "api.tls.secretName=api-tls".to_string(),
    ];
    if service_monitor_crd {
        optional.push("metrics.serviceMonitor.enabled=true".to_string());
    } else {
        eprintln!(
            "no ServiceMonitor CRD (monitoring.coreos.com) in this cluster: \
             dry-running without metrics.serviceMonitor.enabled"
        );
    }
    let watch = format!("watchNamespace={}", watched.name);
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("defaults", vec![]),
        ("watchNamespace", vec![watch]),
        ("optional parts", optional),
    ];
    for (what, sets) in cases {
        let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
        let rendered = template(&release, &ns.name, &sets);
        let out = run(
            "kubectl",
            &["apply", "--dry-run=server", "-f", "-"],
            Some(&rendered),
        );
        assert!(
            out.ok,
            "{what}: the API server refused the chart:\n{}\n{}",
            out.stderr, out.stdout
        );
        // kubectl names each object `<kind>.<group>/<name>`.
        for doc in docs(&rendered) {
            let kind = doc["kind"].as_str().unwrap_or_default().to_lowercase();
            let name = doc["metadata"]["name"].as_str().unwrap_or_default();
            let suffix = format!("/{name} created (server dry run)");
            assert!(
                out.stdout
                    .lines()
                    .any(|l| l.starts_with(&kind) && l.ends_with(&suffix)),
                "{what}: kubectl did not report {kind} {name}:\n{}",
                out.stdout
            );
        }
        let kinds = kinds(&docs(&rendered));
        assert!(kinds.contains("Deployment") && kinds.contains("Service"));
        if what == "optional parts" {
            assert!(kinds.contains("PodDisruptionBudget"), "{kinds:?}");
        }
    }

    // The ServiceMonitor, rendered only: it selects the metrics Service.
    let rendered = docs(&template(
        &release,
        &ns.name,
        &[
            "metrics.serviceMonitor.enabled=true",
            "metrics.serviceMonitor.interval=30s",
            "metrics.serviceMonitor.labels.release=prometheus",
        ],
    ));
    let monitor = one(&rendered, "ServiceMonitor");
    let service = one(&rendered, "Service");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    assert_eq!(monitor["spec"]["endpoints"][0]["interval"], "30s");
    for (key, value) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("matchLabels")
    {
        assert_eq!(
            &service["metadata"]["labels"][key], value,
            "the ServiceMonitor's selector {key}={value} misses the Service"
        );
    }
}

/// In a namespace enforcing (and warning on) "restricted", the Deployment
/// is accepted without a PodSecurity warning, and a Pod of its template
/// is admitted; the same Pod without `capabilities.drop: [ALL]` is
/// refused, which shows PodSecurity admission is on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_is_admitted_under_restricted_pod_security() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "chart-restricted").await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let labels = json!({"metadata": {"labels": {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest",
        "pod-security.kubernetes.io/warn": "restricted",
        "pod-security.kubernetes.io/warn-version": "latest",
    }}});
    namespaces
        .patch(
            &ns.name,
            &PatchParams {
                field_manager: Some(FIELD_MANAGER.to_string()),
                ..PatchParams::default()
            },
            &Patch::Merge(&labels),
        )
        .await
        .unwrap_or_else(|e| panic!("labelling {}: {e}", ns.name));

    let rendered = docs(&template("psa", &ns.name, &[]));
    let deployment = one(&rendered, "Deployment");
    let text = serde_json::to_string(deployment).expect("JSON");
    let out = run(
        "kubectl",
        &["apply", "--dry-run=server", "-f", "-"],
        Some(&text),
    );
    assert!(out.ok, "the Deployment was refused: {}", out.stderr);
    assert!(
        !out.stderr.contains("PodSecurity"),
        "the Deployment would violate restricted: {}",
        out.stderr
    );
    let mut hook = hook_job(&rendered).clone();
    hook["metadata"]["namespace"] = json!(ns.name);
    let out = run(
        "kubectl",
        &["create", "--dry-run=server", "-f", "-"],
        Some(&hook.to_string()),
    );
    assert!(
        out.ok && !out.stderr.contains("PodSecurity"),
        "the uninstall hook's Job would violate restricted: {}",
        out.stderr
    );

    let pod = |security_context: Value| {
        let mut spec = deployment["spec"]["template"]["spec"].clone();
        spec["containers"][0]["securityContext"] = security_context;
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "operator", "namespace": ns.name},
            "spec": spec,
        })
        .to_string()
    };
    let container_context = container(&rendered)["securityContext"].clone();
    let admitted = run(
        "kubectl",
        &["create", "--dry-run=server", "-f", "-"],
        Some(&pod(container_context.clone())),
    );
    assert!(
        admitted.ok && !admitted.stderr.contains("PodSecurity"),
        "a Pod of the Deployment's template was refused: {}",
        admitted.stderr
    );
    let mut weakened = container_context;
    weakened
        .as_object_mut()
        .expect("a securityContext")
        .remove("capabilities");
    let refused = run(
        "kubectl",
        &["create", "--dry-run=server", "-f", "-"],
        Some(&pod(weakened)),
    );
    assert!(
        !refused.ok && refused.stderr.contains("violates PodSecurity"),
        "PodSecurity admission did not refuse a Pod keeping its capabilities: is it off? {}",
        refused.stderr
    );
}

/// The hourly Schedule and the Backfill `january` of its first 3 sessions,
/// which the operator runs with the chart's RBAC.
async fn apply_january(env: &Env) {
    apply_hourly(env, None).await;
    apply_hourly_backfill(
        env,
        "january",
        json!({
            "from": "2026-01-01T00:00:00Z",
            "to": "2026-01-01T03:00:00Z",
            "maxInFlight": 3,
        }),
    )
    .await;
}

/// The chart installed for one namespace; the operator binary runs with
/// nothing but a token of the chart's ServiceAccount and takes a minutely
/// Schedule (a few sessions, then suspended) and a 3-session Backfill to
/// completion, writing the ledger and Events, and logs no "forbidden".
/// The account can do exactly `RULES` (and the Lease rule) and nothing
/// else: no Secrets, no Deployments, no deleting Schedules, nothing in
/// another namespace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_runs_with_only_the_charts_rbac() {
    let env = setup("chart-rbac").await;
    let ns = env.ns.name.clone();
    let release = Release::install(
        "bfo",
        &ns,
        &chart(),
        &["--set", &format!("watchNamespace={ns}")],
    );
    let sa = release.service_account();
    let user = release.user();

    // What the account may do, as `kubectl auth can-i` tells it. The
    // grants first: once they show, the authorizer has the release's RBAC.
    wait_can_i(&user, "create", "jobs.batch", Some(&ns), true).await;
    wait_can_i(
        &user,
        "patch",
        "backfills.backfill.dev/status",
        Some(&ns),
        true,
    )
    .await;
    wait_can_i(
        &user,
        "delete",
        "sessionledgers.backfill.dev",
        Some(&ns),
        true,
    )
    .await;
    wait_can_i(&user, "create", "events.events.k8s.io", Some(&ns), true).await;
    wait_can_i(
        &user,
        "update",
        "leases.coordination.k8s.io",
        Some(&ns),
        true,
    )
    .await;
    for (verb, resource) in [
        ("get", "secrets"),
        ("list", "secrets"),
        ("watch", "secrets"),
    ] {
        assert!(
            !can_i(&user, verb, resource, Some(&ns)),
            "{verb} {resource}"
        );
    }
    assert!(!can_i(&user, "create", "deployments.apps", Some(&ns)));
    assert!(!can_i(&user, "delete", "schedules.backfill.dev", Some(&ns)));
    assert!(!can_i(&user, "update", "schedules.backfill.dev", Some(&ns)));
    assert!(!can_i(&user, "create", "jobs.batch", Some("default")));
    assert!(!can_i(&user, "list", "schedules.backfill.dev", None));
    // The public API is off: no reviews, no patch of Backfills.
    assert!(!can_i(
        &user,
        "create",
        "tokenreviews.authentication.k8s.io",
        None
    ));
    assert!(!can_i(
        &user,
        "create",
        "subjectaccessreviews.authorization.k8s.io",
        None
    ));
    assert!(!can_i(&user, "patch", "backfills.backfill.dev", Some(&ns)));

    // Exactly the rules, verb by verb, through SubjectAccessReviews.
    let verbs = [
        "get",
        "list",
        "watch",
        "create",
        "update",
        "patch",
        "delete",
        "deletecollection",
    ];
    let resources: &[(&str, &str)] = &[
        ("backfill.dev", "schedules"),
        ("backfill.dev", "schedules/status"),
        ("backfill.dev", "backfills"),
        ("backfill.dev", "backfills/status"),
        ("backfill.dev", "sessionledgers"),
        ("backfill.dev", "sessionledgers/status"),
        ("batch", "jobs"),
        ("batch", "jobs/status"),
        ("batch", "cronjobs"),
        ("events.k8s.io", "events"),
        ("", "events"),
        ("coordination.k8s.io", "leases"),
        ("", "secrets"),
        ("", "configmaps"),
        ("", "pods"),
        ("", "serviceaccounts"),
        ("apps", "deployments"),
        ("rbac.authorization.k8s.io", "roles"),
    ];
    let mut granted = RULES.to_vec();
    granted.push(LEASE_RULE);
    eventually(
        "the account's RBAC to be exactly the chart's rules",
        DEADLINE,
        || async {
            let mut wrong = Vec::new();
            for &(group, resource) in resources {
                for verb in verbs {
                    let want = granted
                        .iter()
                        .any(|(g, r, vs)| *g == group && *r == resource && vs.contains(&verb));
                    let got = allowed(&env.client, &user, verb, group, resource, &ns).await;
                    if got != want {
                        wrong.push(format!(
                            "{verb} {group}/{resource}: allowed={got}, expected {want}"
                        ));
                    }
                }
            }
            if wrong.is_empty() {
                Ok(())
            } else {
                Err(format!("\n  {}", wrong.join("\n  ")))
            }
        },
    )
    .await;

    // A token of the chart's account, in a kubeconfig of its own.
    let operator_kubeconfig = service_account_kubeconfig(&env.client, &ns, &sa, &ns).await;
    let path = operator_kubeconfig.to_str().expect("a UTF-8 path");

    // As the chart runs it: under leader election, so the Lease rules are
    // proven too.
    let mut op = Operator::start_with_env(
        &ns,
        &[
            "--time-scale",
            "60",
            "--leader-elect",
            "--leader-election-namespace",
            &ns,
        ],
        &[("KUBECONFIG", path), ("POD_NAME", "rbac-proof")],
    )
    .await;
    apply(
        &env.schedules,
        &schedule_manifest("minutely", "* * * * *", &[], json!({"suspend": false})),
    )
    .await;
    apply_january(&env).await;

    eventually(
        "the minutely Schedule to count 2 succeeded sessions",
        RUN_DEADLINE,
        || async {
            let s = get(&env.schedules, "minutely").await;
            if counter(&s, "succeededSessions") >= 2 {
                Ok(())
            } else {
                Err(status(&s).to_string())
            }
        },
    )
    .await;
    let generation = patch_spec(&env.schedules, "minutely", json!({"suspend": true})).await;
    eventually("the suspension to be observed", DEADLINE, || async {
        let s = get(&env.schedules, "minutely").await;
        if status(&s)["observedGeneration"].as_i64() >= Some(generation) {
            Ok(())
        } else {
            Err(status(&s).to_string())
        }
    })
    .await;

    let bf = wait_finished(&env, "january", RUN_DEADLINE, |_| {}).await;
    assert_eq!(phase(&bf), "Succeeded", "{}", summary(&bf));
    assert_eq!(counter(&bf, "totalEstimated"), 3, "{}", summary(&bf));
    assert_eq!(counter(&bf, "succeededCount"), 3, "{}", summary(&bf));
    assert_eq!(counter(&bf, "processedCount"), 3, "{}", summary(&bf));

    // The ledger: hourly's January holds the 3 sessions, minutely's month
    // its sessions.
    eventually("the SessionLedgers to be written", DEADLINE, || async {
        let list = ledgers(&env)
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        let of = |schedule: &str| {
            list.items
                .iter()
                .filter(|l| l.data["spec"]["scheduleRef"]["name"] == schedule)
                .map(|l| l.data["spec"]["succeeded"].as_i64().unwrap_or(0))
                .sum::<i64>()
        };
        if of("hourly") == 3 && of("minutely") >= 2 {
            Ok(())
        } else {
            let names: Vec<_> = list.items.iter().map(|l| l.data["spec"].clone()).collect();
            Err(format!("{names:?}"))
        }
    })
    .await;

    // Events, written with the account's events.k8s.io permission.
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(env.client.clone(), &ns);
    eventually("Events from the operator", DEADLINE, || async {
        let list = events
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        let ours = list
            .items
            .iter()
            .filter(|e| e.reporting_controller.as_deref() == Some("backfill-operator"))
            .count();
        if ours > 0 {
            Ok(())
        } else {
            Err(format!(
                "{} Events, none from backfill-operator",
                list.items.len()
            ))
        }
    })
    .await;

    op.terminate().await;
    op.assert_nothing_refused(&["publishing an event failed"]);
}

/// watchNamespaces with two namespaces: Roles there and nothing
/// cluster-wide. The operator, with only the chart's account and the
/// namespaces the chart passes, runs a Backfill in each to completion and
/// leaves the one in a third namespace alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_watches_only_the_listed_namespaces() {
    let a = setup("chart-list-a").await;
    let b = setup("chart-list-b").await;
    let other = setup("chart-list-c").await;
    let (na, nb) = (a.ns.name.clone(), b.ns.name.clone());
    let release = Release::install(
        "bfo-list",
        &na,
        &chart(),
        &["--set", &format!("watchNamespaces={{{na},{nb}}}")],
    );
    let user = release.user();
    for ns in [&na, &nb] {
        wait_can_i(&user, "watch", "backfills.backfill.dev", Some(ns), true).await;
        wait_can_i(&user, "create", "jobs.batch", Some(ns), true).await;
    }
    assert!(!can_i(
        &user,
        "list",
        "backfills.backfill.dev",
        Some(&other.ns.name)
    ));
    assert!(!can_i(&user, "list", "backfills.backfill.dev", None));
    let rendered = docs(&run_ok(
        "helm",
        &["get", "manifest", &release.name, "-n", &na],
        None,
    ));
    let flag = format!("--namespace={na},{nb}");
    assert!(
        strings(&container(&rendered)["args"]).contains(&flag),
        "the Deployment passes {flag}"
    );

    let kubeconfig = service_account_kubeconfig(
        &a.client,
        &na,
        &release.service_account(),
        &format!("{na}-list"),
    )
    .await;
    let path = kubeconfig.to_str().expect("a UTF-8 path");
    // The harness passes `--namespace <a>`; the chart's flag names both.
    let mut op = Operator::start_with_env(&na, &[&flag], &[("KUBECONFIG", path)]).await;
    for env in [&a, &b, &other] {
        apply_january(env).await;
    }
    for env in [&a, &b] {
        let bf = wait_finished(env, "january", RUN_DEADLINE, |_| {}).await;
        assert_eq!(phase(&bf), "Succeeded", "{}: {}", env.ns.name, summary(&bf));
        assert_eq!(counter(&bf, "succeededCount"), 3, "{}", summary(&bf));
    }
    // Both finished, so the operator has long seen everything it watches;
    // the third namespace's Backfill has no status and no Job.
    let untouched = get(&other.backfills, "january").await;
    assert!(
        untouched.data.get("status").is_none_or(Value::is_null),
        "a Backfill outside the watched namespaces was handled: {}",
        summary(&untouched)
    );
    let jobs = other
        .jobs
        .list(&ListParams::default())
        .await
        .expect("list Jobs");
    assert!(jobs.items.is_empty(), "Jobs in an unwatched namespace");

    op.terminate().await;
    let logs = op.all_logs();
    let denied: Vec<&str> = logs
        .lines()
        .filter(|l| l.to_lowercase().contains("forbidden"))
        .collect();
    assert!(denied.is_empty(), "refused:\n{}", denied.join("\n"));

    // A namespace the account may not read: the operator says so and
    // exits, instead of waiting for it with the others.
    let out = tokio::task::spawn_blocking({
        let path = path.to_string();
        let namespaces = format!("--namespace={na},{}", other.ns.name);
        move || {
            Command::new(env!("CARGO_BIN_EXE_backfill-operator"))
                .args(["run", &namespaces])
                .env("KUBECONFIG", path)
                .output()
        }
    })
    .await
    .expect("a blocking task")
    .expect("running backfill-operator");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("in namespace {}", other.ns.name)) && stderr.contains("(403)"),
        "{stderr}"
    );
}

/// Installed cluster-wide, upgraded, uninstalled: the ClusterRole and
/// binding come and go with the release, the CRDs (from the chart's
/// `crds/`, which Helm installs once and never deletes) and the objects
/// of them stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_uninstall_keeps_the_crds() {
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "chart-uninstall").await;
    let name = format!("un-{}", &ns.name[ns.name.len() - 8..]);
    let release = Release::install(&name, &ns.name, &chart(), &[]);
    let user = release.user();
    let fullname = release.service_account();

    wait_can_i(&user, "list", "schedules.backfill.dev", None, true).await;
    wait_can_i(&user, "create", "jobs.batch", Some("default"), true).await;
    wait_can_i(
        &user,
        "update",
        "leases.coordination.k8s.io",
        Some(&ns.name),
        true,
    )
    .await;
    assert!(!can_i(&user, "get", "secrets", None));
    assert!(!can_i(
        &user,
        "update",
        "leases.coordination.k8s.io",
        Some("default")
    ));

    let upgraded = {
        let chart = chart();
        run_ok(
            "helm",
            &[
                "upgrade",
                &name,
                chart.to_str().expect("a UTF-8 path"),
                "-n",
                &ns.name,
                "--reuse-values",
                "--set",
                "logFormat=text",
            ],
            None,
        );
        run_ok(
            "kubectl",
            &[
                "get",
                "deployment",
                &fullname,
                "-n",
                &ns.name,
                "-o",
                "jsonpath={.spec.template.spec.containers[0].args}",
            ],
            None,
        )
    };
    assert!(upgraded.contains("--log-format=text"), "{upgraded}");

    let schedules = Api::<DynamicObject>::namespaced_with(
        client.clone(),
        &ns.name,
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("backfill.dev", "v1alpha1", "Schedule"),
            "schedules",
        ),
    );
    apply(
        &schedules,
        &schedule_manifest("kept", "0 * * * *", &[], json!({})),
    )
    .await;

    run_ok("helm", &["uninstall", &name, "-n", &ns.name], None);
    let gone = run(
        "kubectl",
        &["get", "clusterrole", &fullname, "-o", "name"],
        None,
    );
    assert!(!gone.ok, "the ClusterRole outlived the release");
    wait_can_i(&user, "list", "schedules.backfill.dev", None, false).await;

    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in CRDS {
        let found = crds
            .get_opt(crd)
            .await
            .unwrap_or_else(|e| panic!("reading CRD {crd}: {e}"));
        assert!(found.is_some(), "helm uninstall deleted the CRD {crd}");
    }
    schedules
        .get("kept")
        .await
        .unwrap_or_else(|e| panic!("the Schedule did not survive helm uninstall: {e}"));
}
