//! The container image of `make image`, read back as a registry and a
//! container runtime read it: an OCI image layout tarball whose blobs match
//! their digests, a config that runs `/backfill-operator` as 65532:65532,
//! and one layer holding only that binary, statically linked.
//!
//! The tests run hack/image.sh themselves, so the archive they read is the
//! one of the sources under test (after `make image` that takes seconds, a
//! cold release build takes minutes). When the image cannot be built they
//! fail.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use flate2::read::GzDecoder;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const BINARY: &str = "backfill-operator";
const VERSION: &str = env!("CARGO_PKG_VERSION");
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// The image's name, as hack/image.sh gives it.
fn reference() -> String {
    let repository = std::env::var("IMAGE_REPOSITORY")
        .unwrap_or_else(|_| "ghcr.io/backfill-dev/backfill-operator".into());
    format!("{repository}:{VERSION}")
}

fn expected_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => panic!("hack/image.sh builds no image on {other}"),
    }
}

/// A file of a tar archive.
struct Entry {
    path: String,
    kind: tar::EntryType,
    mode: u32,
    data: Vec<u8>,
}

fn read_tar(bytes: &[u8]) -> Vec<Entry> {
    let mut archive = tar::Archive::new(bytes);
    let mut entries = Vec::new();
    for entry in archive.entries().expect("a tar archive") {
        let mut entry = entry.expect("a tar entry");
        let path = entry
            .path()
            .expect("a tar path")
            .to_string_lossy()
            .into_owned();
        let kind = entry.header().entry_type();
        let mode = entry.header().mode().expect("a tar mode");
        let mut data = Vec::new();
        entry.read_to_end(&mut data).expect("tar entry data");
        entries.push(Entry {
            path,
            kind,
            mode,
            data,
        });
    }
    entries
}

fn sha256_hex(data: &[u8]) -> String {
    format!("{:x}", Sha256::digest(data))
}

/// The files of the image archive, by path.
struct Image {
    files: BTreeMap<String, Vec<u8>>,
    layer_tar: OnceLock<Vec<u8>>,
}

fn image() -> &'static Image {
    static IMAGE: OnceLock<Result<Image, String>> = OnceLock::new();
    match IMAGE.get_or_init(build_image) {
        Ok(image) => image,
        Err(e) => panic!("{e}"),
    }
}

fn build_image() -> Result<Image, String> {
    let mut command = Command::new("bash");
    // cargo gives a test its package's variables. Reaching the release
    // build's build scripts (ring's watches CARGO_MANIFEST_DIR), they would
    // make it rebuild much of what `make image` built.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_BIN_EXE_")
            || matches!(
                &*name,
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_TARGET_TMPDIR"
            )
        {
            command.env_remove(&*name);
        }
    }
    // cargo's progress and any error go straight to the terminal.
    let out = command
        .arg("hack/image.sh")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run hack/image.sh: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "hack/image.sh failed ({}), its output is above",
            out.status
        ));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let path = stdout
        .lines()
        .last()
        .ok_or("hack/image.sh printed no archive path")?;
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let files = read_tar(&bytes)
        .into_iter()
        .filter(|e| e.kind.is_file())
        .map(|e| (e.path, e.data))
        .collect();
    Ok(Image {
        files,
        layer_tar: OnceLock::new(),
    })
}

impl Image {
    fn file(&self, path: &str) -> &[u8] {
        self.files
            .get(path)
            .unwrap_or_else(|| panic!("the archive has no {path}"))
    }

    fn json(&self, path: &str) -> Value {
        serde_json::from_slice(self.file(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// The blob a descriptor points at, after checking its digest and size.
    fn blob(&self, descriptor: &Value) -> &[u8] {
        let digest = descriptor["digest"].as_str().expect("a digest");
        let hex = digest
            .strip_prefix("sha256:")
            .unwrap_or_else(|| panic!("{digest} is not sha256"));
        let blob = self.file(&format!("blobs/sha256/{hex}"));
        assert_eq!(
            sha256_hex(blob),
            hex,
            "blob {digest} does not match its digest"
        );
        assert_eq!(
            descriptor["size"].as_u64(),
            Some(blob.len() as u64),
            "size of blob {digest}"
        );
        blob
    }

    fn manifest_descriptor(&self) -> Value {
        let index = self.json("index.json");
        let manifests = index["manifests"].as_array().expect("index manifests");
        assert_eq!(manifests.len(), 1, "one image in the index: {index}");
        manifests[0].clone()
    }

    fn manifest(&self) -> Value {
        serde_json::from_slice(self.blob(&self.manifest_descriptor())).expect("manifest JSON")
    }

    fn config(&self) -> Value {
        serde_json::from_slice(self.blob(&self.manifest()["config"])).expect("config JSON")
    }

    /// The single layer, uncompressed.
    fn layer_tar(&self) -> &[u8] {
        self.layer_tar.get_or_init(|| {
            let manifest = self.manifest();
            let layers = manifest["layers"].as_array().expect("manifest layers");
            assert_eq!(layers.len(), 1, "one layer: {manifest}");
            let mut tar = Vec::new();
            GzDecoder::new(self.blob(&layers[0]))
                .read_to_end(&mut tar)
                .expect("a gzip layer");
            tar
        })
    }
}

#[test]
fn the_index_names_one_linux_image_with_its_reference() {
    let image = image();
    assert_eq!(
        image.json("oci-layout"),
        json!({"imageLayoutVersion": "1.0.0"})
    );
    let index = image.json("index.json");
    assert_eq!(index["schemaVersion"], 2);
    let descriptor = image.manifest_descriptor();
    assert_eq!(descriptor["mediaType"], OCI_MANIFEST);
    assert_eq!(
        descriptor["platform"],
        json!({"architecture": expected_arch(), "os": "linux"})
    );
    for annotation in [
        "io.containerd.image.name",
        "org.opencontainers.image.ref.name",
    ] {
        assert_eq!(descriptor["annotations"][annotation], reference().as_str());
    }
}

#[test]
fn every_blob_matches_its_digest_and_none_is_left_over() {
    let image = image();
    let manifest = image.manifest();
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(manifest["mediaType"], OCI_MANIFEST);
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    // The config names the layer by the digest of its uncompressed tar.
    let config = image.config();
    assert_eq!(config["rootfs"]["type"], "layers");
    assert_eq!(
        config["rootfs"]["diff_ids"],
        json!([format!("sha256:{}", sha256_hex(image.layer_tar()))])
    );

    let referenced: Vec<String> = [
        &image.manifest_descriptor(),
        &manifest["config"],
        &manifest["layers"][0],
    ]
    .iter()
    .map(|d| d["digest"].as_str().expect("a digest").replace(':', "/"))
    .map(|blob| format!("blobs/{blob}"))
    .collect();
    let mut blobs: Vec<&String> = image
        .files
        .keys()
        .filter(|p| p.starts_with("blobs/"))
        .collect();
    blobs.sort();
    let mut expected: Vec<&String> = referenced.iter().collect();
    expected.sort();
    assert_eq!(blobs, expected, "the blobs are exactly the image's");

    // `docker load` and `crane push` read docker's manifest.json: the same
    // config and layer, tagged with the reference.
    assert_eq!(
        image.json("manifest.json"),
        json!([{
            "Config": referenced[1],
            "RepoTags": [reference()],
            "Layers": [referenced[2]],
        }])
    );
}

#[test]
fn the_config_runs_the_binary_as_non_root() {
    let config = image().config();
    assert_eq!(config["architecture"], expected_arch());
    assert_eq!(config["os"], "linux");
    let run = &config["config"];
    assert_eq!(run["Entrypoint"], json!([format!("/{BINARY}")]));
    assert!(run["Cmd"].is_null(), "no default arguments: {run}");
    assert_eq!(run["User"], "65532:65532");
    assert_eq!(
        run["Labels"]["org.opencontainers.image.version"], VERSION,
        "{run}"
    );
}

#[test]
fn the_layer_holds_the_executable_binary_and_nothing_else() {
    let entries = read_tar(image().layer_tar());
    let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, [BINARY], "no shell, no other file");
    assert!(!paths.iter().any(|p| p.trim_start_matches('/') == "bin/sh"));
    let binary = &entries[0];
    assert!(binary.kind.is_file());
    assert_eq!(binary.mode & 0o111, 0o111, "executable by anyone");
}

/// What an ELF64 little-endian file asks of the dynamic loader. A static-pie
/// binary keeps a dynamic section for its own relocations, so "static"
/// means no program interpreter and no needed library.
#[derive(Debug, PartialEq)]
struct DynamicLinking {
    interpreter: bool,
    needed_libraries: usize,
}

fn dynamic_linking(elf: &[u8]) -> DynamicLinking {
    const PT_DYNAMIC: u32 = 2;
    const PT_INTERP: u32 = 3;
    const DT_NULL: u64 = 0;
    const DT_NEEDED: u64 = 1;
    let u16_at = |at: usize| u16::from_le_bytes(elf[at..at + 2].try_into().unwrap());
    let u32_at = |at: usize| u32::from_le_bytes(elf[at..at + 4].try_into().unwrap());
    let u64_at = |at: usize| u64::from_le_bytes(elf[at..at + 8].try_into().unwrap());
    assert_eq!(&elf[..4], b"\x7fELF", "an ELF file");
    assert_eq!((elf[4], elf[5]), (2, 1), "64-bit little-endian ELF");

    let mut linking = DynamicLinking {
        interpreter: false,
        needed_libraries: 0,
    };
    let (phoff, phentsize, phnum) = (u64_at(0x20) as usize, u16_at(0x36), u16_at(0x38));
    for i in 0..usize::from(phnum) {
        let header = phoff + i * usize::from(phentsize);
        match u32_at(header) {
            PT_INTERP => linking.interpreter = true,
            PT_DYNAMIC => {
                let (offset, size) = (u64_at(header + 8) as usize, u64_at(header + 32) as usize);
                for entry in (offset..offset + size).step_by(16) {
                    match u64_at(entry) {
                        DT_NULL => break,
                        DT_NEEDED => linking.needed_libraries += 1,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    linking
}

#[test]
fn the_binary_is_static_and_runs_with_nothing_around_it() {
    let entries = read_tar(image().layer_tar());
    let binary = &entries[0];
    assert_eq!(
        dynamic_linking(&binary.data),
        DynamicLinking {
            interpreter: false,
            needed_libraries: 0
        }
    );

    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join(BINARY);
    std::fs::write(&path, &binary.data).expect("write the binary");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(binary.mode))
        .expect("make it executable");
    let out = Command::new(&path)
        .arg("--version")
        .env_clear()
        .output()
        .expect("the binary starts");
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with(&format!("{BINARY} {VERSION}")),
        "--version printed {stdout:?}"
    );
}

/// The check above, on binaries whose answer is known: this test binary
/// is linked dynamically.
#[test]
fn dynamic_linking_detects_the_dynamically_linked_test_binary() {
    let this = std::fs::read(std::env::current_exe().expect("the test binary")).expect("read it");
    let linking = dynamic_linking(&this);
    assert!(
        linking.interpreter && linking.needed_libraries > 0,
        "{linking:?}"
    );
}
