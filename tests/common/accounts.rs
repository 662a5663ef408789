//! Running as a ServiceAccount: a token minted with the TokenRequest API
//! (as `kubectl create token` and the kubelet do), in a kubeconfig that
//! holds nothing else, so a process using it has exactly the account's
//! RBAC.

use std::path::{Path, PathBuf};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use super::DEADLINE;
use super::helm::{kubeconfig, run};
use super::poll::eventually;

/// How long a minted token stays valid: longer than any test.
const TOKEN_SECONDS: i64 = 2 * 3_600;

/// A token of the ServiceAccount `ns`/`name`, for the API server's own
/// audience. Not bound to a Pod: see `pods.rs` for why.
pub async fn service_account_token(client: &Client, ns: &str, name: &str) -> String {
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(TOKEN_SECONDS),
            ..TokenRequestSpec::default()
        }),
        ..TokenRequest::default()
    };
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .unwrap_or_else(|e| panic!("TokenRequest for ServiceAccount {ns}/{name}: {e}"))
        .status
        .and_then(|s| s.token)
        .unwrap_or_else(|| panic!("TokenRequest for {ns}/{name} returned no token"))
}

/// Mints a token of the ServiceAccount `ns`/`name` and writes a kubeconfig
/// with only that token (default namespace `ns`) to
/// `<CARGO_TARGET_TMPDIR>/<file_stem>.kubeconfig`; returns its path.
pub async fn service_account_kubeconfig(
    client: &Client,
    ns: &str,
    name: &str,
    file_stem: &str,
) -> PathBuf {
    let token = service_account_token(client, ns, name).await;
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{file_stem}.kubeconfig"));
    write_token_kubeconfig(&path, &token, ns);
    path
}

/// A kubeconfig for a bearer token, with the server and CA of the admin
/// kubeconfig, written to `path`.
pub fn write_token_kubeconfig(path: &Path, token: &str, ns: &str) {
    let admin_path = kubeconfig();
    let text = std::fs::read_to_string(&admin_path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", admin_path.display()));
    let admin: Value = serde_yaml::from_str(&text)
        .unwrap_or_else(|e| panic!("parsing {}: {e}", admin_path.display()));
    let current = admin["current-context"]
        .as_str()
        .expect("a current context");
    let context = admin["contexts"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == current))
        .expect("the current context");
    let cluster_name = context["context"]["cluster"].as_str().expect("a cluster");
    let mut cluster = admin["clusters"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == cluster_name))
        .expect("the current cluster")["cluster"]
        .clone();
    // A relative CA path is relative to the kubeconfig it came from.
    if let Some(ca) = cluster["certificate-authority"].as_str()
        && Path::new(ca).is_relative()
    {
        let dir = admin_path.parent().unwrap_or(Path::new("."));
        cluster["certificate-authority"] = json!(dir.join(ca));
    }
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": cluster}],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": "test", "user": "operator", "namespace": ns}}],
        "current-context": "operator",
    });
    std::fs::write(path, serde_json::to_vec_pretty(&config).expect("JSON"))
        .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// A ServiceAccount `name` of `ns` with `verbs` on Backfills there, and
/// nothing else.
pub async fn backfill_account(client: &Client, ns: &str, name: &str, verbs: &[&str]) {
    account(client, ns, name, &[("backfills", verbs)]).await;
}

/// A ServiceAccount `name` of `ns` with, for each `(resource, verbs)` of
/// `rules`, those verbs on that `backfill.dev` resource there, and nothing
/// else; returns once the API server's authorizer knows it.
pub async fn account(client: &Client, ns: &str, name: &str, rules: &[(&str, &[&str])]) {
    let meta = || ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(ns.to_string()),
        ..ObjectMeta::default()
    };
    let pp = PostParams::default();
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create(
            &pp,
            &ServiceAccount {
                metadata: meta(),
                ..Default::default()
            },
        )
        .await
        .expect("a ServiceAccount");
    let policy = rules
        .iter()
        .map(|(resource, verbs)| PolicyRule {
            api_groups: Some(vec!["backfill.dev".into()]),
            resources: Some(vec![resource.to_string()]),
            verbs: verbs.iter().map(|v| v.to_string()).collect(),
            ..PolicyRule::default()
        })
        .collect();
    Api::<Role>::namespaced(client.clone(), ns)
        .create(
            &pp,
            &Role {
                metadata: meta(),
                rules: Some(policy),
            },
        )
        .await
        .expect("a Role");
    Api::<RoleBinding>::namespaced(client.clone(), ns)
        .create(
            &pp,
            &RoleBinding {
                metadata: meta(),
                role_ref: RoleRef {
                    api_group: Some("rbac.authorization.k8s.io".into()),
                    kind: "Role".into(),
                    name: name.into(),
                },
                subjects: Some(vec![Subject {
                    kind: "ServiceAccount".into(),
                    name: name.into(),
                    namespace: Some(ns.into()),
                    ..Subject::default()
                }]),
            },
        )
        .await
        .expect("a RoleBinding");
    // The authorizer learns of the binding from a watch, a moment later.
    let user = format!("system:serviceaccount:{ns}:{name}");
    for (resource, verbs) in rules {
        if let Some(verb) = verbs.first() {
            let resource = format!("{resource}.backfill.dev");
            wait_can_i(&user, verb, &resource, Some(ns), true).await;
        }
    }
}

/// `kubectl ARGS -o json` as the account of `kubeconfig`, with `stdin`:
/// its output as JSON, or the error it printed.
pub fn kubectl_as(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Result<Value, String> {
    let config = kubeconfig.to_str().expect("a UTF-8 path");
    let mut all = vec!["--kubeconfig", config];
    all.extend(args);
    all.extend(["-o", "json"]);
    let out = run("kubectl", &all, stdin);
    if !out.ok {
        return Err(out.stderr);
    }
    serde_json::from_str(&out.stdout).map_err(|e| format!("kubectl {args:?}: {e}: {}", out.stdout))
}

/// `kubectl auth can-i <verb> <resource> [--subresource s] -n <ns>` as
/// `user`.
pub fn can_i(user: &str, verb: &str, resource: &str, ns: Option<&str>) -> bool {
    let (resource, subresource) = match resource.split_once('/') {
        Some((r, s)) => (r, Some(s)),
        None => (resource, None),
    };
    let as_user = format!("--as={user}");
    let mut args = vec!["auth", "can-i", verb, resource, &as_user];
    match ns {
        Some(ns) => args.extend(["-n", ns]),
        None => args.push("--all-namespaces"),
    }
    let sub;
    if let Some(s) = subresource {
        sub = format!("--subresource={s}");
        args.push(&sub);
    }
    let out = run("kubectl", &args, None);
    match out.stdout.trim() {
        "yes" => true,
        "no" => false,
        other => panic!(
            "kubectl {}: unexpected answer {other:?}: {}",
            args.join(" "),
            out.stderr
        ),
    }
}

/// Waits until `kubectl auth can-i` says yes (or, with `want` false, no):
/// the authorizer learns of new (Cluster)Roles and bindings from a watch,
/// a moment after they are written.
pub async fn wait_can_i(user: &str, verb: &str, resource: &str, ns: Option<&str>, want: bool) {
    eventually(
        &format!("can-i {verb} {resource} in {ns:?} to be {want} for {user}"),
        DEADLINE,
        || async {
            if can_i(user, verb, resource, ns) == want {
                Ok(())
            } else {
                Err(format!("still {}", !want))
            }
        },
    )
    .await;
}
