//! The seeds' HTTP APIs, end to end: the operator runs as a real process
//! serving `--api-address` over HTTPS (a certificate made with openssl),
//! callers present real ServiceAccount tokens (TokenRequest), and the real
//! API server answers the TokenReviews and SubjectAccessReviews, so RBAC
//! decides. Each seed call is checked field by field against the seed's
//! shape.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kube::Client;
use kube::api::ListParams;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::DEADLINE;
use common::accounts::{self, service_account_kubeconfig, service_account_token, wait_can_i};
use common::api::{Env, apply, apply_hourly, backfill_manifest, get, setup};
use common::helm::{Release, chart, run_ok};
use common::instants::hours;
use common::kwok::FailStage;
use common::operator::Operator;
use common::poll::eventually;
use common::status::{RUN_DEADLINE, phase, status, summary, wait_finished};

const FROM: &str = "2026-01-01T00:00:00Z";

// ---------------------------------------------------------------------
// An HTTPS client of the API
// ---------------------------------------------------------------------

/// A CA, and a certificate it signed for 127.0.0.1 with its key, made with
/// openssl in a directory of the test's own: (CA, certificate, key).
fn certificate(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).expect("a directory for the certificate");
    let p = |name: &str| dir.join(name);
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec![
        "req",
        "-x509",
        "-days",
        "1",
        "-subj",
        "/CN=test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    ];
    ca.extend(ec);
    openssl(&ca);
    let mut csr = vec![
        "req",
        "-new",
        "-subj",
        "/CN=backfill-operator",
        "-keyout",
        "tls.key",
        "-out",
        "tls.csr",
    ];
    csr.extend(ec);
    openssl(&csr);
    std::fs::write(
        p("ext.cnf"),
        "basicConstraints=critical,CA:FALSE\nsubjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    .expect("writing ext.cnf");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "tls.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "ext.cnf",
        "-out",
        "tls.crt",
    ]);
    (p("ca.crt"), p("tls.crt"), p("tls.key"))
}

/// A free port on loopback (asked of the OS, then freed for the operator).
fn free_port() -> u16 {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    probe.local_addr().expect("its address").port()
}

/// The API over HTTPS, trusting only the test's certificate.
struct Https {
    address: String,
    tls: tokio_rustls::TlsConnector,
}

/// An answer: status, lower-cased headers, JSON body (`Null` when empty).
struct Answer {
    status: u16,
    headers: String,
    body: Value,
}

impl Https {
    fn new(address: String, cert: &Path) -> Self {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(cert).expect("the certificate") {
            roots.add(c.expect("a PEM certificate")).expect("a root");
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        Self {
            address,
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
        }
    }

    /// Whether a TLS handshake succeeds (the server's certificate is one
    /// this client trusts).
    async fn try_handshake(&self) -> Result<(), String> {
        let tcp = tokio::net::TcpStream::connect(&self.address)
            .await
            .map_err(|e| e.to_string())?;
        let name = rustls_pki_types::ServerName::try_from("127.0.0.1").expect("a name");
        self.tls
            .connect(name, tcp)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// One request on a connection of its own.
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let tcp = tokio::net::TcpStream::connect(&self.address)
            .await
            .unwrap_or_else(|e| panic!("connecting to {}: {e}", self.address));
        let name = rustls_pki_types::ServerName::try_from("127.0.0.1").expect("a name");
        let mut s = self
            .tls
            .connect(name, tcp)
            .await
            .unwrap_or_else(|e| panic!("TLS handshake with {}: {e}", self.address));
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            self.address,
            body.len()
        );
        if let Some(t) = token {
            head.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes()).await.expect("sending");
        s.write_all(body.as_bytes())
            .await
            .expect("sending the body");
        let mut out = Vec::new();
        // A server may close without a TLS close_notify: what was read is
        // the whole answer (Connection: close).
        let _ = s.read_to_end(&mut out).await;
        let text = String::from_utf8_lossy(&out).to_string();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let (status_line, headers) = head.split_once("\r\n").unwrap_or((head, ""));
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no status in {text:?}"));
        let body = if body.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(body)
                .unwrap_or_else(|e| panic!("{method} {path}: a JSON body: {e}: {body}"))
        };
        Answer {
            status,
            headers: headers.to_lowercase(),
            body,
        }
    }
}

/// Asserts `answer` is `status`, saying what it was.
fn expect(answer: &Answer, status: u16, what: &str) {
    assert_eq!(answer.status, status, "{what}: {}", answer.body);
}

/// Asserts `answer` is an error body with `code`.
fn expect_error(answer: &Answer, code: u16, what: &str) {
    expect(answer, code, what);
    assert_eq!(
        answer.body["error"]["code"],
        json!(code),
        "{what}: {}",
        answer.body
    );
    assert!(
        answer.body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{what}: {}",
        answer.body
    );
    assert!(
        answer.body["meta"]["request_id"].is_string(),
        "{what}: {}",
        answer.body
    );
}

// ---------------------------------------------------------------------
// The seeds' shapes
// ---------------------------------------------------------------------

const STRING: &str = "string";
const NUMBER: &str = "number";
const OBJECT: &str = "object";
const ARRAY: &str = "array";
const BOOL: &str = "boolean";

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => BOOL,
        Value::Number(_) => NUMBER,
        Value::String(_) => STRING,
        Value::Array(_) => ARRAY,
        Value::Object(_) => OBJECT,
    }
}

/// Checks that `v` has each field, of its kind (or null when `nullable`).
fn has_fields(v: &Value, fields: &[(&str, &str, bool)], what: &str) {
    for (field, kind, nullable) in fields {
        let got = v
            .get(*field)
            .unwrap_or_else(|| panic!("{what}.{field} missing: {v}"));
        let k = kind_of(got);
        assert!(
            k == *kind || (*nullable && k == "null"),
            "{what}.{field} is {k}, not {kind}: {v}"
        );
    }
}

/// The NeoAgent seed's `data.backfill`, `data.cost_estimate` and `meta`.
fn check_neoagent_shape(body: &Value) {
    let b = &body["data"]["backfill"];
    has_fields(
        b,
        &[
            ("id", STRING, false),
            ("created_at", STRING, false),
            ("created_by", STRING, true),
            ("daily_execution_windows", OBJECT, false),
            ("error", STRING, true),
            ("failed_count", NUMBER, false),
            ("filter_spec", OBJECT, false),
            ("max_in_flight", NUMBER, false),
            ("processed_count", NUMBER, false),
            ("started_at", STRING, true),
            ("completed_at", STRING, true),
            ("succeeded_count", NUMBER, false),
            // A string: Kubernetes UIDs are not numbers (see the README).
            ("target_workflow_id", STRING, true),
            ("target_workflow_name", STRING, false),
            ("timezone", STRING, false),
            ("total_estimated", NUMBER, false),
            ("parent_backfill_run_id", STRING, true),
        ],
        "data.backfill",
    );
    for day in [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ] {
        let windows = b["daily_execution_windows"][day]
            .as_array()
            .unwrap_or_else(|| panic!("daily_execution_windows.{day}: {b}"));
        for w in windows {
            has_fields(
                w,
                &[
                    ("run_start_time", STRING, false),
                    ("run_end_time", STRING, false),
                ],
                "window",
            );
        }
    }
    has_fields(
        &body["data"]["cost_estimate"],
        &[
            ("credits_per_entity", NUMBER, false),
            ("total_credits_estimated", NUMBER, false),
            ("total_entities", NUMBER, false),
        ],
        "data.cost_estimate",
    );
    check_meta(&body["meta"]);
}

fn check_meta(meta: &Value) {
    has_fields(
        meta,
        &[
            ("request_id", STRING, false),
            ("timings_ms", OBJECT, false),
            ("pagination", OBJECT, false),
            ("warnings", ARRAY, false),
        ],
        "meta",
    );
    has_fields(
        &meta["pagination"],
        &[("has_more", BOOL, false), ("next_cursor", STRING, true)],
        "meta.pagination",
    );
}

/// The workflow seed's attempt fields.
fn check_attempt_shape(a: &Value) {
    has_fields(
        a,
        &[
            ("id", STRING, false),
            ("index", NUMBER, false),
            ("project", OBJECT, false),
            ("workflow", OBJECT, false),
            ("sessionId", STRING, false),
            ("sessionUuid", STRING, false),
            ("sessionTime", STRING, false),
            ("retryAttemptName", STRING, false),
            ("done", BOOL, false),
            ("success", BOOL, false),
            ("cancelRequested", BOOL, false),
            ("params", OBJECT, false),
            ("createdAt", STRING, false),
            ("finishedAt", STRING, true),
            ("status", STRING, false),
        ],
        "attempt",
    );
    for part in ["project", "workflow"] {
        has_fields(
            &a[part],
            &[("name", STRING, false), ("id", STRING, false)],
            part,
        );
    }
    let status = a["status"].as_str().unwrap_or_default();
    assert!(
        [
            "queued",
            "running",
            "canceling",
            "success",
            "error",
            "killed"
        ]
        .contains(&status),
        "{a}"
    );
}

// ---------------------------------------------------------------------
// Accounts
// ---------------------------------------------------------------------

/// The ServiceAccount `name` of `ns` with `verbs` on `resources` there:
/// a token of it.
async fn account(client: &Client, ns: &str, name: &str, rules: &[(&str, &[&str])]) -> String {
    accounts::account(client, ns, name, rules).await;
    service_account_token(client, ns, name).await
}

/// Starts the operator with the API over HTTPS and waits until it answers.
async fn operator_with_api(env: &Env) -> (Operator, Https) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{}-tls", env.ns.name));
    let (ca, cert, key) = certificate(&dir);
    let address = format!("127.0.0.1:{}", free_port());
    let op = Operator::start(
        &env.ns.name,
        &[
            "--api-address",
            &address,
            "--api-tls-cert-file",
            cert.to_str().expect("UTF-8"),
            "--api-tls-key-file",
            key.to_str().expect("UTF-8"),
            "--api-rerun-wait-seconds",
            "60",
        ],
    )
    .await;
    let https = Https::new(address, &ca);
    let answer = https
        .call("GET", "/public-api/openapi.json", None, None, &[])
        .await;
    expect(&answer, 200, "the OpenAPI document");
    (op, https)
}

const WRITER: &[(&str, &[&str])] = &[
    ("backfills", &["create", "get", "list", "patch"]),
    ("schedules", &["get"]),
];
const READER: &[(&str, &[&str])] = &[("backfills", &["get", "list"]), ("schedules", &["get"])];

// ---------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_neoagent_calls_over_https_with_tokens_and_rbac() {
    let env = setup("public-api").await;
    let ns = env.ns.name.clone();
    let writer = account(&env.client, &ns, "writer", WRITER).await;
    let reader = account(&env.client, &ns, "reader", READER).await;
    let to = "2026-01-01T06:00:00Z";
    let plan = hours(FROM, to);
    let fail = vec![plan[1], plan[4]];
    let _stage = FailStage::for_backfill(&env, "jan", &fail).await;
    apply_hourly(&env, Some("1s")).await;
    let (_op, api) = operator_with_api(&env).await;
    let list = format!("/public-api/backfills?namespace={ns}");

    // No token, a token the API server refuses: 401.
    let a = api.call("GET", &list, None, None, &[]).await;
    expect_error(&a, 401, "no token");
    assert!(
        a.headers.contains("www-authenticate: bearer"),
        "{}",
        a.headers
    );
    let a = api.call("GET", &list, Some("not-a-token"), None, &[]).await;
    expect_error(&a, 401, "an invalid token");

    // The operator watches this namespace only: no other is served.
    let a = api
        .call("GET", "/public-api/backfills", Some(&reader), None, &[])
        .await;
    expect_error(&a, 400, "a list of every namespace");
    assert_eq!(a.body["error"]["field"], "namespace", "{}", a.body);
    let a = api
        .call(
            "GET",
            "/public-api/backfills/kube-system%2Fjan",
            Some(&reader),
            None,
            &[],
        )
        .await;
    expect_error(&a, 404, "a namespace the operator does not watch");

    // A token whose account lacks the verb: 403.
    let body = json!({
        "namespace": ns, "name": "jan", "target_workflow_name": "hourly",
        "from": FROM, "to": to, "max_in_flight": 3,
    });
    let a = api
        .call(
            "POST",
            "/public-api/backfills",
            Some(&reader),
            Some(&body),
            &[],
        )
        .await;
    expect_error(&a, 403, "create as a reader");
    assert!(
        a.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot create"),
        "{}",
        a.body
    );

    // Bad requests name the field: the CRD's own rules, as admission
    // applies them, and the body's types.
    let mut bad = body.clone();
    bad["max_in_flight"] = json!(0);
    let a = api
        .call(
            "POST",
            "/public-api/backfills",
            Some(&writer),
            Some(&bad),
            &[],
        )
        .await;
    expect_error(&a, 400, "maxInFlight 0");
    assert_eq!(a.body["error"]["field"], "max_in_flight", "{}", a.body);
    let mut bad = body.clone();
    bad["to"] = json!("2025-01-01T00:00:00Z");
    let a = api
        .call(
            "POST",
            "/public-api/backfills",
            Some(&writer),
            Some(&bad),
            &[],
        )
        .await;
    expect_error(&a, 400, "from after to");
    assert!(
        a.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("from must be earlier than to"),
        "{}",
        a.body
    );
    let a = api
        .call(
            "POST",
            "/public-api/backfills",
            Some(&writer),
            Some(&json!({"namespace": ns, "max_in_flight": "x"})),
            &[],
        )
        .await;
    expect_error(&a, 400, "a string for a number");
    assert_eq!(a.body["error"]["field"], "max_in_flight", "{}", a.body);
    let huge = json!({"namespace": ns, "sessions": vec!["2026-01-01T00:00:00Z"; 5000]});
    let a = api
        .call(
            "POST",
            "/public-api/backfills",
            Some(&writer),
            Some(&huge),
            &[],
        )
        .await;
    expect_error(&a, 413, "a body over the limit");

    // Create: the seed's shape, the caller as created_by.
    let a = api
        .call(
            "POST",
            "/public-api/backfills",
            Some(&writer),
            Some(&body),
            &[],
        )
        .await;
    expect(&a, 201, "create");
    check_neoagent_shape(&a.body);
    let created = &a.body["data"]["backfill"];
    let who = format!("system:serviceaccount:{ns}:writer");
    let bf = get(&env.backfills, "jan").await;
    assert_eq!(
        bf.metadata.annotations.as_ref().unwrap()["backfill.dev/created-by"],
        who
    );
    let id = created["id"].as_str().unwrap().to_string();

    // Read by run id and by namespace/name; unknown ids are 404.
    let parent = wait_finished(&env, "jan", RUN_DEADLINE, |_| {}).await;
    assert_eq!(phase(&parent), "Failed", "{}", summary(&parent));
    let a = api
        .call(
            "GET",
            &format!("/public-api/backfills/{id}"),
            Some(&reader),
            None,
            &[],
        )
        .await;
    expect(&a, 200, "get by id");
    check_neoagent_shape(&a.body);
    let b = &a.body["data"]["backfill"];
    assert_eq!(b["id"], json!(id));
    assert_eq!(b["id"], status(&parent)["runId"]);
    assert_eq!(b["created_by"], json!(who));
    assert_eq!(b["target_workflow_name"], "hourly");
    assert_eq!(b["target_workflow_id"], status(&parent)["scheduleUid"]);
    assert_eq!(
        (&b["total_estimated"], &b["processed_count"]),
        (&json!(6), &json!(6))
    );
    assert_eq!(
        (&b["succeeded_count"], &b["failed_count"]),
        (&json!(4), &json!(2))
    );
    assert_eq!(b["max_in_flight"], 3);
    assert!(
        b["completed_at"].is_string() && b["started_at"].is_string(),
        "{b}"
    );
    let a = api
        .call(
            "GET",
            &format!("/public-api/backfills/{ns}%2Fjan"),
            Some(&reader),
            None,
            &[],
        )
        .await;
    expect(&a, 200, "get by namespace/name");
    assert_eq!(a.body["data"]["backfill"]["id"], json!(id));
    let a = api
        .call(
            "GET",
            "/public-api/backfills/00000000-0000-0000-0000-000000000000",
            Some(&reader),
            None,
            &[],
        )
        .await;
    expect_error(&a, 404, "an unknown id");

    // Rerun: a reader may not; a writer gets the child, once per key.
    let rerun = format!("/public-api/backfills/{id}/rerun-failed");
    let a = api
        .call(
            "POST",
            &rerun,
            Some(&reader),
            None,
            &[("Idempotency-Key", "k-1")],
        )
        .await;
    expect_error(&a, 403, "rerun as a reader");
    let a = api
        .call(
            "POST",
            &rerun,
            Some(&writer),
            None,
            &[("Idempotency-Key", "k-1")],
        )
        .await;
    expect(&a, 200, "rerun");
    check_neoagent_shape(&a.body);
    let child = a.body["data"]["backfill"].clone();
    assert_eq!(child["parent_backfill_run_id"], json!(id), "{child}");
    // Who asked for the rerun is the child's author.
    assert_eq!(child["created_by"], json!(who), "{child}");
    assert_eq!(
        child["name"],
        json!(format!("{ns}/jan-rerun-k-1")),
        "{child}"
    );
    let again = api
        .call(
            "POST",
            &rerun,
            Some(&writer),
            None,
            &[("Idempotency-Key", "k-1")],
        )
        .await;
    expect(&again, 200, "the same rerun again");
    assert_eq!(again.body["data"]["backfill"]["id"], child["id"]);
    let children = env
        .backfills
        .list(&ListParams::default().labels("backfill.dev/parent=jan"))
        .await
        .expect("the children");
    assert_eq!(
        children.items.len(),
        1,
        "a retried request made a second child"
    );
    let child_bf = wait_finished(&env, "jan-rerun-k-1", RUN_DEADLINE, |_| {}).await;
    assert_eq!(phase(&child_bf), "Succeeded", "{}", summary(&child_bf));
    // A parent with nothing left to rerun: the child, rerun, is a 409.
    let child_id = child["id"].as_str().unwrap();
    let a = api
        .call(
            "POST",
            &format!("/public-api/backfills/{child_id}/rerun-failed"),
            Some(&writer),
            None,
            &[],
        )
        .await;
    expect_error(&a, 409, "a rerun of a backfill without failures");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workflow_call_and_pagination() {
    let env = setup("public-wf").await;
    let ns = env.ns.name.clone();
    let writer = account(&env.client, &ns, "writer", WRITER).await;
    let schedule = apply_hourly(&env, Some("1s")).await;
    let uid = schedule.metadata.uid.clone().expect("a UID");
    let (_op, api) = operator_with_api(&env).await;
    let by_name = format!("/api/schedules/{ns}%2Fhourly/backfill");

    // A dry run: the planned sessions, nothing created.
    let body = json!({"attemptName": "dry", "count": 3, "dryRun": true, "fromTime": FROM});
    let a = api
        .call("POST", &by_name, Some(&writer), Some(&body), &[])
        .await;
    expect(&a, 200, "a dry run");
    assert_eq!(a.body["id"], json!(uid));
    assert_eq!(a.body["workflow"], json!({"name": "hourly", "id": uid}));
    let attempts = a.body["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 3, "{}", a.body);
    for (i, at) in attempts.iter().enumerate() {
        check_attempt_shape(at);
        assert_eq!(at["index"], json!(i));
        assert_eq!(at["status"], "queued");
        assert_eq!(at["retryAttemptName"], "dry");
        assert_eq!(at["project"]["name"], json!(ns));
    }
    assert_eq!(attempts[0]["sessionTime"], "2026-01-01T00:00:00+00:00");
    assert_eq!(
        attempts[2]["sessionId"],
        json!((hours(FROM, "2026-01-01T03:00:00Z")[2]).to_string())
    );
    let none = env.backfills.get_opt("dry").await.expect("a read");
    assert!(none.is_none(), "a dry run created a Backfill");

    // The call for real, by the Schedule's UID; the same again is the
    // same; other parameters under the same attemptName are a 409.
    let body = json!({"attemptName": "fix-1", "count": 2, "dryRun": false, "fromTime": FROM});
    let by_uid = format!("/api/schedules/{uid}/backfill");
    let a = api
        .call("POST", &by_uid, Some(&writer), Some(&body), &[])
        .await;
    expect(&a, 200, "a backfill");
    let attempts = a.body["attempts"].as_array().expect("attempts").clone();
    assert_eq!(attempts.len(), 2, "{}", a.body);
    attempts.iter().for_each(check_attempt_shape);
    let bf = get(&env.backfills, "fix-1").await;
    assert_eq!(bf.data["spec"]["count"], 2);
    assert_eq!(bf.data["spec"]["attemptName"], "fix-1");
    let done = wait_finished(&env, "fix-1", RUN_DEADLINE, |_| {}).await;
    assert_eq!(phase(&done), "Succeeded", "{}", summary(&done));
    let a = api
        .call("POST", &by_name, Some(&writer), Some(&body), &[])
        .await;
    expect(&a, 200, "the same call again");
    let again = a.body["attempts"].as_array().expect("attempts");
    assert_eq!(again.len(), 2);
    for at in again {
        check_attempt_shape(at);
        assert_eq!(at["status"], "success", "{at}");
        assert_eq!((&at["done"], &at["success"]), (&json!(true), &json!(true)));
        assert!(at["finishedAt"].is_string(), "{at}");
    }
    let other = json!({"attemptName": "fix-1", "count": 3, "dryRun": false, "fromTime": FROM});
    let a = api
        .call("POST", &by_name, Some(&writer), Some(&other), &[])
        .await;
    expect_error(&a, 409, "attemptName reused with another count");
    let a = api
        .call(
            "POST",
            &by_name,
            Some(&writer),
            Some(&json!({"attemptName": "x", "dryRun": true, "fromTime": "soon"})),
            &[],
        )
        .await;
    expect_error(&a, 400, "a fromTime that is no time");
    assert_eq!(a.body["error"]["field"], "fromTime", "{}", a.body);
    let a = api
        .call(
            "POST",
            "/api/schedules/nope/backfill",
            Some(&writer),
            Some(&body),
            &[],
        )
        .await;
    expect_error(&a, 404, "an unknown schedule");

    // A create with an Idempotency-Key and no name: named from the key;
    // the same request again answers with the same Backfill, another body
    // under the same key is a 409.
    let create = json!({"namespace": ns, "target_workflow_name": "hourly",
        "from": FROM, "count": 2, "dry_run": true});
    let key = [("Idempotency-Key", "create-1")];
    let first = api
        .call(
            "POST",
            "/public-api/backfills",
            Some(&writer),
            Some(&create),
            &key,
        )
        .await;
    expect(&first, 201, "a create with a key");
    let again = api
        .call(
            "POST",
            "/public-api/backfills",
            Some(&writer),
            Some(&create),
            &key,
        )
        .await;
    expect(&again, 200, "the same create again");
    assert_eq!(
        again.body["data"]["backfill"]["id"],
        first.body["data"]["backfill"]["id"]
    );
    let mut other = create.clone();
    other["count"] = json!(3);
    let a = api
        .call(
            "POST",
            "/public-api/backfills",
            Some(&writer),
            Some(&other),
            &key,
        )
        .await;
    expect_error(&a, 409, "the key with another body");

    // Pagination over more Backfills than a page.
    for i in 0..7 {
        apply(
            &env.backfills,
            &backfill_manifest(
                &format!("page-{i}"),
                "hourly",
                json!({"from": FROM, "count": 1, "dryRun": true}),
            ),
        )
        .await;
    }
    let all: Vec<String> = env
        .backfills
        .list(&ListParams::default())
        .await
        .expect("a list")
        .items
        .into_iter()
        .map(|b| b.metadata.name.unwrap_or_default())
        .collect();
    assert!(all.len() >= 8, "{all:?}");
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!(
                "/public-api/backfills?namespace={ns}&limit=3&cursor={}",
                encode(c)
            ),
            None => format!("/public-api/backfills?namespace={ns}&limit=3"),
        };
        let a = api.call("GET", &path, Some(&writer), None, &[]).await;
        expect(&a, 200, "a page");
        check_meta(&a.body["meta"]);
        let page = a.body["data"].as_array().expect("a page of backfills");
        assert!(page.len() <= 3, "{}", a.body);
        for item in page {
            seen.push(item["backfill"]["name"].as_str().unwrap().to_string());
        }
        pages += 1;
        let p = &a.body["meta"]["pagination"];
        if p["has_more"] == json!(true) {
            cursor = Some(p["next_cursor"].as_str().expect("a cursor").to_string());
        } else {
            assert!(p["next_cursor"].is_null(), "{p}");
            break;
        }
        assert!(pages < 20, "pagination does not end");
    }
    let mut expected: Vec<String> = all.iter().map(|n| format!("{ns}/{n}")).collect();
    expected.sort();
    seen.sort();
    assert_eq!(seen, expected);
    assert!(pages >= 3, "{pages} pages");
    let a = api
        .call(
            "GET",
            &format!("/public-api/backfills?namespace={ns}&limit=0"),
            Some(&writer),
            None,
            &[],
        )
        .await;
    expect_error(&a, 400, "limit 0");
    assert_eq!(a.body["error"]["field"], "limit");

    // A rerun of a parent that cannot have one (a dry run) is a 409 with
    // the reason, and leaves no request behind.
    let a = api
        .call(
            "POST",
            &format!("/public-api/backfills/{ns}%2Fpage-0/rerun-failed"),
            Some(&writer),
            None,
            &[],
        )
        .await;
    expect_error(&a, 409, "a rerun of a dry run");
    assert_eq!(a.body["error"]["reason"], "DryRun", "{}", a.body);
    let page0 = get(&env.backfills, "page-0").await;
    assert!(
        page0
            .metadata
            .annotations
            .as_ref()
            .is_none_or(|a| !a.contains_key("backfill.dev/rerun-failed")),
        "a refused rerun annotated the parent"
    );
}

/// Percent-encodes a query value.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_rate_gets_429_with_retry_after() {
    let env = setup("public-rate").await;
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{}-tls", env.ns.name));
    let (ca, cert, key) = certificate(&dir);
    let address = format!("127.0.0.1:{}", free_port());
    let _op = Operator::start(
        &env.ns.name,
        &[
            "--api-address",
            &address,
            "--api-tls-cert-file",
            cert.to_str().unwrap(),
            "--api-tls-key-file",
            key.to_str().unwrap(),
            "--api-rate-limit",
            "0.2",
            "--api-rate-burst",
            "3",
        ],
    )
    .await;
    let api = Https::new(address, &ca);
    let limited = eventually("a 429", DEADLINE, || async {
        let a = api
            .call("GET", "/public-api/backfills", None, None, &[])
            .await;
        if a.status == 429 {
            Ok(a)
        } else {
            Err(format!("{}", a.status))
        }
    })
    .await;
    expect_error(&limited, 429, "over the rate");
    assert!(
        limited.headers.contains("retry-after: "),
        "{}",
        limited.headers
    );
}

/// schemathesis (from PyPI, installed by `hack/schemathesis.sh` into the
/// tools cache) fuzzes every operation of `/public-api/openapi.json` with
/// a real token: no answer may be a 5xx, and every answer must be one the
/// document describes (status, content type, schema). It fails, never
/// skips, when schemathesis cannot be installed or run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_nothing_off_the_document() {
    let env = setup("public-fuzz").await;
    let ns = env.ns.name.clone();
    let writer = account(&env.client, &ns, "writer", WRITER).await;
    let schedule = apply_hourly(&env, Some("1s")).await;
    let jan = apply(
        &env.backfills,
        &backfill_manifest(
            "jan",
            "hourly",
            json!({"from": FROM, "count": 2, "dryRun": true}),
        ),
    )
    .await;
    let schedule_uid = schedule.metadata.uid.clone().expect("a UID");
    let jan_id =
        backfill_operator::core::backfill::run_id(jan.metadata.uid.as_deref().expect("a UID"));
    let install = std::process::Command::new("bash")
        .arg(common::repo_root().join("hack/schemathesis.sh"))
        .output()
        .expect("bash runs hack/schemathesis.sh");
    assert!(
        install.status.success(),
        "installing schemathesis failed (PyPI must be reachable): {}",
        String::from_utf8_lossy(&install.stderr)
    );
    let stdout = String::from_utf8_lossy(&install.stdout).to_string();
    let schemathesis = stdout
        .lines()
        .last()
        .expect("the path of schemathesis")
        .trim()
        .to_string();
    // Plain HTTP on loopback (the HTTPS path is the other tests'), and a
    // rate no fuzzer reaches.
    let address = format!("127.0.0.1:{}", free_port());
    let _op = Operator::start(
        &ns,
        &[
            "--api-address",
            &address,
            "--api-rate-limit",
            "10000",
            "--api-rate-burst",
            "10000",
            "--api-rerun-wait-seconds",
            "2",
        ],
    )
    .await;
    let base = format!("http://{address}");
    let report = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{ns}-schemathesis"));
    std::fs::create_dir_all(&report).expect("a report directory");
    // Ids that exist, so calls get past the 404s into the handlers:
    // the bodies and the other parameters are still generated.
    let config = report.join("schemathesis.toml");
    std::fs::write(
        &config,
        format!(
            "[parameters]\n\"path.backfill_id\" = \"{jan_id}\"\n\"path.id\" = \"{schedule_uid}\"\n\"query.namespace\" = \"{ns}\"\n"
        ),
    )
    .expect("writing the schemathesis config");
    let workdir = report.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(&schemathesis)
            .arg("--config-file")
            .arg(&config)
            .args([
                "run",
                &format!("{base}/public-api/openapi.json"),
                "--url",
                &base,
                "--header",
                &format!("Authorization: Bearer {writer}"),
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
                "--phases",
                "examples,coverage,fuzzing",
                "--max-examples",
                "40",
                // One worker: with two, schemathesis itself failed now and
                // then (a Python "AST constructor recursion depth mismatch"
                // while two threads built their strategies), a runtime error
                // of the tool, not a finding about the API.
                "--workers",
                "1",
                "--seed",
                "1",
                "--wait-for-schema",
                "30",
                "--suppress-health-check",
                "all",
                "--report-dir",
                report.to_str().expect("UTF-8"),
            ])
            .env("NO_COLOR", "1")
            // Its cache (.schemathesis/) goes there, not into the work tree.
            .current_dir(&workdir)
            .output()
            .expect("schemathesis runs")
    })
    .await
    .expect("the schemathesis task");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    assert!(out.status.success(), "schemathesis found failures:\n{text}");
    assert!(text.contains("passed"), "schemathesis ran nothing:\n{text}");
}

/// A renewed certificate (the Secret's files replaced, as the kubelet
/// swaps a mounted Secret) is served without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_is_served_without_a_restart() {
    let env = setup("public-tls").await;
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{}-tls", env.ns.name));
    let (ca, cert, key) = certificate(&root.join("first"));
    let (new_ca, new_cert, new_key) = certificate(&root.join("second"));
    let live = root.join("live");
    std::fs::create_dir_all(&live).expect("a directory");
    let (live_cert, live_key) = (live.join("tls.crt"), live.join("tls.key"));
    std::fs::copy(&cert, &live_cert).expect("copying the certificate");
    std::fs::copy(&key, &live_key).expect("copying the key");
    let address = format!("127.0.0.1:{}", free_port());
    let _op = Operator::start(
        &env.ns.name,
        &[
            "--api-address",
            &address,
            "--api-tls-cert-file",
            live_cert.to_str().expect("UTF-8"),
            "--api-tls-key-file",
            live_key.to_str().expect("UTF-8"),
        ],
    )
    .await;
    let old = Https::new(address.clone(), &ca);
    expect(
        &old.call("GET", "/public-api/openapi.json", None, None, &[])
            .await,
        200,
        "the first certificate",
    );
    // Replaced whole, by rename, as a Secret's update is.
    for (from, to) in [(&new_key, &live_key), (&new_cert, &live_cert)] {
        let tmp = to.with_extension("new");
        std::fs::copy(from, &tmp).expect("copying");
        std::fs::rename(&tmp, to).expect("renaming");
    }
    let new = Https::new(address.clone(), &new_ca);
    eventually("the renewed certificate to be served", DEADLINE, || {
        new.try_handshake()
    })
    .await;
    expect(
        &new.call("GET", "/public-api/openapi.json", None, None, &[])
            .await,
        200,
        "the renewed certificate",
    );
    // A client of its own: `old` could resume its TLS session, which
    // presents no certificate.
    let fresh = Https::new(address, &ca);
    assert!(
        fresh.try_handshake().await.is_err(),
        "the first certificate is still served"
    );
}

/// `api.enabled`: with only the chart's account, the operator serves the
/// public API: a caller's token goes through a TokenReview and each call
/// through a SubjectAccessReview, which the chart's ClusterRole allows, and
/// a create goes through, stamped with the caller (the chart's created-by
/// policy, bound to this namespace, leaves the operator's writes alone).
/// Plain HTTP on loopback: the HTTPS path is the other tests'.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_api_runs_with_only_the_charts_rbac() {
    let env = setup("chart-api").await;
    let ns = env.ns.name.clone();
    let release = Release::install(
        "bfo-api",
        &ns,
        &chart(),
        &[
            "--set",
            &format!("watchNamespace={ns}"),
            "--set",
            "api.enabled=true",
            "--set",
            "api.tls.secretName=bfo-api-tls",
            "--set",
            &format!(
                "createdByPolicy.namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name={ns}"
            ),
        ],
    );
    let user = release.user();
    wait_can_i(
        &user,
        "create",
        "tokenreviews.authentication.k8s.io",
        None,
        true,
    )
    .await;
    wait_can_i(
        &user,
        "create",
        "subjectaccessreviews.authorization.k8s.io",
        None,
        true,
    )
    .await;
    wait_can_i(&user, "patch", "backfills.backfill.dev", Some(&ns), true).await;

    // A caller allowed to create and list Backfills there.
    let caller_role = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "api-caller", "namespace": ns},
        "rules": [{"apiGroups": ["backfill.dev"], "resources": ["backfills"], "verbs": ["create", "get", "list"]}],
    });
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "api-caller", "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "api-caller"},
        "subjects": [{"kind": "ServiceAccount", "name": "api-caller", "namespace": ns}],
    });
    let account = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "api-caller", "namespace": ns}});
    for manifest in [account, caller_role, binding] {
        run_ok(
            "kubectl",
            &["apply", "-f", "-"],
            Some(&manifest.to_string()),
        );
    }
    let token = service_account_token(&env.client, &ns, "api-caller").await;

    let kubeconfig = service_account_kubeconfig(
        &env.client,
        &ns,
        &release.service_account(),
        &format!("{ns}-api"),
    )
    .await;
    let path = kubeconfig.to_str().expect("a UTF-8 path");
    let address = format!("127.0.0.1:{}", free_port());
    let metrics_address = format!("127.0.0.1:{}", free_port());
    let mut op = Operator::start_with_env(
        &ns,
        &[
            "--api-address",
            &address,
            "--listen-address",
            &metrics_address,
        ],
        &[("KUBECONFIG", path)],
    )
    .await;
    apply_hourly(&env, None).await;

    let body = json!({"namespace": ns, "name": "via-api", "target_workflow_name": "hourly",
        "from": "2026-01-01T00:00:00Z", "count": 2, "dry_run": true});
    let (status, answer) = call(
        &address,
        "POST",
        "/public-api/backfills",
        &token,
        Some(&body),
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(
        answer["data"]["backfill"]["created_by"],
        json!(format!("system:serviceaccount:{ns}:api-caller"))
    );
    eventually("the listing to show the new Backfill", DEADLINE, || async {
        let (status, answer) = call(
            &address,
            "GET",
            &format!("/public-api/backfills?namespace={ns}"),
            &token,
            None,
        )
        .await;
        let names: Vec<&str> = answer["data"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|b| b["backfill"]["name"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        if status == 200 && names.contains(&format!("{ns}/via-api").as_str()) {
            Ok(())
        } else {
            Err(format!("{status}: {answer}"))
        }
    })
    .await;
    // The caller may not patch: a rerun is refused by the review.
    let (status, answer) = call(
        &address,
        "POST",
        &format!("/public-api/backfills/{ns}%2Fvia-api/rerun-failed"),
        &token,
        None,
    )
    .await;
    assert_eq!(status, 403, "{answer}");

    // Each call is counted, by operation and status.
    let (_, metrics) = common::http::get(&metrics_address, "/metrics")
        .await
        .expect("the metrics");
    for (sample, want) in [
        (
            r#"backfill_operator_api_requests_total{operation="create_backfill",code="201"}"#,
            1.0,
        ),
        (
            r#"backfill_operator_api_requests_total{operation="rerun_failed",code="403"}"#,
            1.0,
        ),
    ] {
        assert_eq!(
            common::http::sample(&metrics, sample),
            want,
            "{sample}:\n{metrics}"
        );
    }
    op.terminate().await;
    op.assert_nothing_refused(&["refused"]);
}

/// One plain HTTP/1.1 call with a bearer token: (status, JSON body).
async fn call(
    address: &str,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut s = tokio::net::TcpStream::connect(address)
        .await
        .unwrap_or_else(|e| panic!("connecting to {address}: {e}"));
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes()).await.expect("sending");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("reading");
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {out:?}"));
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}
