#!/usr/bin/env python3
"""Packs one statically linked binary into a single-layer container image,
written as an OCI image layout tarball. hack/image.sh calls it.

The archive holds the OCI image layout (oci-layout, index.json,
blobs/sha256/) and, next to it, the manifest.json that `docker save`
writes, so `docker load`, `skopeo copy oci-archive:...` and `crane push`
read the same file. Its bytes depend only on the inputs: fixed owners and
timestamps, sorted JSON, gzip without a name or time.

The package's name, version, description and license come from
`cargo metadata --no-deps --format-version 1` on stdin.
"""

import argparse
import datetime
import gzip
import hashlib
import io
import json
import os
import struct
import sys
import tarfile

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
PT_INTERP = 3


def fail(message):
    sys.exit(f"oci-archive: {message}")


def require_static(path, elf):
    """An image with nothing but the binary has no dynamic loader."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2 or elf[5] != 1:
        fail(f"{path} is not a 64-bit little-endian ELF file")
    (phoff,) = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    for i in range(phnum):
        (p_type,) = struct.unpack_from("<I", elf, phoff + i * phentsize)
        if p_type == PT_INTERP:
            fail(f"{path} is dynamically linked (it asks for a program interpreter)")


def tar_bytes(entries, mtime):
    """A tar of (name, mode, bytes or None for a directory), in that order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, mode, data in entries:
            info = tarfile.TarInfo(name)
            info.mode, info.mtime, info.uid, info.gid = mode, mtime, 0, 0
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def gzip_bytes(data):
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        gz.write(data)
    return buf.getvalue()


def canonical_json(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", required=True, help="the statically linked entrypoint")
    parser.add_argument("--package", required=True, help="the Cargo package it comes from")
    parser.add_argument("--repository", required=True, help="image name without the tag")
    parser.add_argument("--arch", required=True, help="image architecture (amd64, arm64)")
    parser.add_argument("--user", required=True, help="UID:GID the entrypoint runs as")
    parser.add_argument("--created", type=int, required=True, help="Unix seconds")
    parser.add_argument("--revision", default="", help="source revision label")
    parser.add_argument("--out-dir", required=True, help="writes <package>-<version>.tar here")
    args = parser.parse_args()

    packages = [p for p in json.load(sys.stdin)["packages"] if p["name"] == args.package]
    if len(packages) != 1:
        fail(f"cargo metadata has no package {args.package}")
    package = packages[0]
    version = package["version"]
    reference = f"{args.repository}:{version}"
    created = datetime.datetime.fromtimestamp(args.created, datetime.timezone.utc)
    created = created.strftime("%Y-%m-%dT%H:%M:%SZ")

    with open(args.binary, "rb") as f:
        binary = f.read()
    require_static(args.binary, binary)
    name = os.path.basename(args.binary)

    layer_tar = tar_bytes([(name, 0o755, binary)], args.created)
    layer = gzip_bytes(layer_tar)

    labels = {
        "org.opencontainers.image.title": package["name"],
        "org.opencontainers.image.description": package.get("description") or "",
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.licenses": package.get("license") or "",
        "org.opencontainers.image.created": created,
    }
    if args.revision:
        labels["org.opencontainers.image.revision"] = args.revision
    config = canonical_json({
        "created": created,
        "architecture": args.arch,
        "os": "linux",
        "config": {
            "Entrypoint": [f"/{name}"],
            "User": args.user,
            "Labels": labels,
        },
        "rootfs": {"type": "layers", "diff_ids": [digest(layer_tar)]},
        "history": [{"created": created, "created_by": f"hack/image.sh: /{name}"}],
    })
    manifest = canonical_json({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": digest(config), "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": digest(layer), "size": len(layer)}],
    })
    index = canonical_json({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{
            "mediaType": OCI_MANIFEST,
            "digest": digest(manifest),
            "size": len(manifest),
            "platform": {"architecture": args.arch, "os": "linux"},
            "annotations": {
                "io.containerd.image.name": reference,
                "org.opencontainers.image.ref.name": reference,
            },
        }],
    })

    def blob_path(data):
        return "blobs/sha256/" + hashlib.sha256(data).hexdigest()

    docker_manifest = canonical_json([{
        "Config": blob_path(config),
        "RepoTags": [reference],
        "Layers": [blob_path(layer)],
    }])
    files = {
        "oci-layout": canonical_json({"imageLayoutVersion": "1.0.0"}),
        "index.json": index,
        "manifest.json": docker_manifest,
        blob_path(config): config,
        blob_path(manifest): manifest,
        blob_path(layer): layer,
    }
    entries = [("blobs", 0o755, None), ("blobs/sha256", 0o755, None)]
    entries += [(path, 0o644, files[path]) for path in sorted(files)]

    os.makedirs(args.out_dir, exist_ok=True)
    out = os.path.join(args.out_dir, f"{package['name']}-{version}.tar")
    with open(out + ".tmp", "wb") as f:
        f.write(tar_bytes(entries, args.created))
    os.replace(out + ".tmp", out)
    print(
        f"oci-archive: {reference} ({args.arch}), manifest {digest(manifest)}, "
        f"binary {len(binary)} bytes, layer {len(layer)} bytes",
        file=sys.stderr,
    )
    print(out)


if __name__ == "__main__":
    main()
