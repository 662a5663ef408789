//! Prints the operator's CRDs as YAML, or writes them to a directory.
//!
//! `crdgen` prints every CRD as one YAML stream; `crdgen DIR...` writes
//! one file per CRD into each directory (`make crds` does this for
//! `crds/` and the chart).

fn main() -> std::io::Result<()> {
    let crds = backfill_operator::crds::all();
    let dirs: Vec<String> = std::env::args().skip(1).collect();
    if dirs.is_empty() {
        let docs: Vec<String> = crds
            .iter()
            .map(|(_, crd)| backfill_operator::crds::to_yaml(crd))
            .collect();
        print!("{}", docs.join("---\n"));
        return Ok(());
    }
    for dir in dirs {
        std::fs::create_dir_all(&dir)?;
        for (file, crd) in &crds {
            std::fs::write(
                std::path::Path::new(&dir).join(file),
                backfill_operator::crds::to_yaml(crd),
            )?;
        }
    }
    Ok(())
}
