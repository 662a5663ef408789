//! The CRDs checked into the repository are exactly what `crdgen` makes
//! from `src/api`: `crds/`, and the Helm chart's copy once there is one.
//! No cluster needed.

use std::collections::BTreeMap;
use std::path::Path;

/// Directories holding generated CRDs; those that do not exist are skipped,
/// except `crds/` which must.
const REQUIRED: &str = "crds";
const OPTIONAL: &[&str] = &["charts/backfill-operator/crds"];

/// File name to content, as `make crds` would write them.
fn generated() -> BTreeMap<String, String> {
    backfill_operator::crds::all()
        .into_iter()
        .map(|(file, crd)| (file, backfill_operator::crds::to_yaml(&crd)))
        .collect()
}

/// File name to content of every file in `dir`.
fn on_disk(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}; run `make crds`", dir.display()))
        .map(|entry| {
            let path = entry.expect("a directory entry").path();
            let content = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            let name = path
                .file_name()
                .expect("a file name")
                .to_string_lossy()
                .into_owned();
            (name, content)
        })
        .collect()
}

/// What differs between `dir` and the generated CRDs, one line each.
fn drift(dir: &str) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let want = generated();
    let have = on_disk(&root.join(dir));
    let mut problems = Vec::new();
    for (file, content) in &want {
        match have.get(file) {
            None => problems.push(format!("{dir}/{file} is missing")),
            Some(found) if found != content => {
                let line = first_difference(found, content);
                problems.push(format!(
                    "{dir}/{file} differs from src/api, first at line {line}"
                ));
            }
            Some(_) => {}
        }
    }
    for file in have.keys().filter(|f| !want.contains_key(*f)) {
        problems.push(format!("{dir}/{file} is not a CRD of src/api"));
    }
    problems
}

fn first_difference(a: &str, b: &str) -> usize {
    a.lines()
        .zip(b.lines())
        .position(|(x, y)| x != y)
        .unwrap_or_else(|| a.lines().count().min(b.lines().count()))
        + 1
}

#[test]
fn generated_crds_are_checked_in() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut problems = drift(REQUIRED);
    for dir in OPTIONAL.iter().filter(|d| root.join(d).is_dir()) {
        problems.extend(drift(dir));
    }
    assert!(
        problems.is_empty(),
        "the checked-in CRDs are not what src/api generates; run `make crds`:\n  {}",
        problems.join("\n  ")
    );
}
