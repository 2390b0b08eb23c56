//! Pushes synthetic but valid images straight through the distribution API: gzip layers of
//! incompressible random bytes, base layers shared between images, multi-arch indexes
//! (amd64 and arm64), and the sample chart as an OCI artifact (through the real helm).
//!
//! Layer content is derived from a seed, so pushing a preset twice pushes the same digests
//! and presets share what they should: `release-next` reuses most of `release`.

use std::io::Write;
use std::path::Path;
use std::process::Command;

use reqwest::blocking::Client;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::env::{Env, Registry};
use crate::{Error, https_client};

/// An image set.
#[derive(Debug, Clone)]
pub struct Preset {
    pub name: &'static str,
    /// The release version, and the chart's version.
    pub version: &'static str,
    pub images: Vec<ImageSpec>,
}

/// One image of a preset: its tag, its layers as (seed, size) and whether it is multi-arch.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    pub name: String,
    /// The release's version, or for an image a later release did not change, the tag it
    /// had before (its content, config included, is then byte for byte the same).
    pub tag: &'static str,
    pub layers: Vec<(u64, usize)>,
    pub multi_arch: bool,
    /// Whether a container runtime can run it: a top layer with the sample program
    /// ([`app_layer`]) as its entrypoint, so its pods really start on a real node.
    pub runnable: bool,
}

const MIB: usize = 1 << 20;

/// Names like a Wallaroo release's (the full list is not public; see the reference notes).
const RELEASE_IMAGES: &[&str] = &[
    "conductor-wallsvc",
    "fitzroy-mini",
    "fitzroy-mini-cuda",
    "standalone-mini",
    "mac-deploy",
    "mlflow-deploy",
    "keycloak",
    "minio",
    "postgres",
    "jupyterhub",
    "jupyter-datascience",
    "plateau",
    "arbiter",
    "rest-api",
    "dashboard",
    "model-registry",
    "pipeline-controller",
    "engine-lb",
    "engine-sidecar",
    "assays-v1",
    "assays-v2",
    "inference-gateway",
    "metrics-exporter",
    "prometheus",
    "grafana",
    "nats",
    "redis",
    "envoy",
    "oauth2-proxy",
    "cert-manager",
    "ops-center",
    "edge-bundler",
    "pypi-proxy",
    "model-converter",
    "python-step",
    "vector",
    "loki",
    "tempo",
    "workload-scheduler",
    "wallaroo-cli",
];

/// Where a preset is seeded by default: `tiny` under `wallaroo` (what the sandbox and the
/// quickstart read), the release presets under `release`, so that they never overwrite the
/// tiny images and chart that share their names and version.
pub fn default_path(preset: &Preset) -> &'static str {
    match preset.name {
        "tiny" => "wallaroo",
        "large" => "large",
        _ => "release",
    }
}

/// Layers of this size and more are pushed as uncompressed tars, generated and hashed as a
/// stream (the `large` preset's, of 1-4 GiB, are never held in memory).
pub const STREAMED_FROM: usize = 256 * MIB;

const GIB: usize = 1 << 30;

const RELEASE: &str = "2025.1.0-6290";
const NEXT: &str = "2025.1.1-6301";
const LARGE: &str = "2025.2.0-7000";

/// `tiny`, `release`, `release-next` or `large`.
pub fn preset(name: &str) -> Option<Preset> {
    match name {
        // About 11 GB, shaped like a real release: four engine images on one 1 GiB base
        // with runtime layers of 1-4 GiB (uncompressed tars, generated as a stream), and
        // the release's other images as in `release` (some multi-arch).
        "large" => {
            let mut images = preset("release")?.images;
            let engines: [(&str, u64, usize); 4] = [
                ("fitzroy-mini-cuda", 5001, 4 * GIB),
                ("standalone-mini", 5002, 2 * GIB),
                ("mac-deploy", 5003, GIB),
                ("mlflow-deploy", 5004, GIB),
            ];
            for (name, seed, size) in engines {
                let image = images
                    .iter_mut()
                    .find(|i| i.name == name)
                    .expect("a release image");
                image.layers = vec![(5000, GIB), (seed, size)];
                image.multi_arch = false;
            }
            for image in &mut images {
                image.tag = LARGE;
            }
            Some(Preset {
                name: "large",
                version: LARGE,
                images,
            })
        }
        "tiny" => Some(Preset {
            name: "tiny",
            version: "2025.1.0-6290",
            images: vec![
                ImageSpec {
                    name: "conductor-wallsvc".into(),
                    tag: "2025.1.0-6290",
                    layers: vec![(1, 64 << 10), (11, 32 << 10)],
                    multi_arch: false,
                    runnable: true,
                },
                ImageSpec {
                    name: "fitzroy-mini".into(),
                    tag: "2025.1.0-6290",
                    layers: vec![(1, 64 << 10), (12, 48 << 10)],
                    multi_arch: true,
                    runnable: true,
                },
                ImageSpec {
                    name: "keycloak".into(),
                    tag: "2025.1.0-6290",
                    layers: vec![(2, 16 << 10)],
                    multi_arch: false,
                    runnable: true,
                },
            ],
        }),
        // About 40 images and 1.5 GB, with three shared base layers.
        "release" | "release-next" => {
            let next = name == "release-next";
            let images = RELEASE_IMAGES
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    let base = match i % 3 {
                        0 => vec![(1000, 96 * MIB), (1001, 16 * MIB)],
                        1 => vec![(1002, 48 * MIB)],
                        _ => vec![(1000, 96 * MIB)],
                    };
                    // In the next release one image in five changes its top layer (and
                    // gets the new tag); the others keep theirs.
                    let changed = next && i % 5 == 0;
                    let top_seed = if changed {
                        3000 + i as u64
                    } else {
                        2000 + i as u64
                    };
                    let mut layers = base;
                    layers.push((top_seed, 25 * MIB + (i % 7) * MIB));
                    ImageSpec {
                        name: n.to_string(),
                        tag: if changed { NEXT } else { RELEASE },
                        layers,
                        multi_arch: i % 13 == 1,
                        runnable: false,
                    }
                })
                .collect();
            Some(Preset {
                name: if next { "release-next" } else { "release" },
                version: if next { NEXT } else { RELEASE },
                images,
            })
        }
        _ => None,
    }
}

/// Pushes a preset's images under `{path}/{name}:{version}` and the sample chart to
/// `oci://{vendor}/{path}/{channel}`. Returns the bytes of new blobs pushed.
pub fn seed(
    env: &Env,
    preset: &Preset,
    registry: &Registry,
    path: &str,
    chart_dir: &Path,
) -> Result<u64, Error> {
    // Seeds of one path take turns (tests seed concurrently, in one process or several): two
    // uploads of the same blob into one repository at once can leave the registry's link to
    // it missing for a moment, and a manifest pushed then is refused as naming an unknown blob.
    let lock_path = env.run_dir.join(format!(
        "seed-{}-{}.lock",
        registry.host,
        path.replace('/', "_")
    ));
    let lock = std::fs::File::create(&lock_path).map_err(|e| Error::io(&lock_path, e))?;
    lock.lock().map_err(|e| Error::io(&lock_path, e))?;
    let client = https_client(&env.ca_file)?;
    let mut pushed = 0;
    // Layers already in some repository of this registry: (seed, size) -> (digest, diff id,
    // length, repository), so shared layers are mounted, not generated and sent again.
    let mut known: std::collections::HashMap<(u64, usize), (String, String, usize, String)> =
        Default::default();
    for image in &preset.images {
        let repo = format!("{path}/{}", image.name);
        // Content comes from seeds, and the tag is pushed last: a tag already there means the
        // image is there whole, as this seed would push it.
        let head = client
            .head(format!(
                "https://{}/v2/{repo}/manifests/{}",
                registry.address(),
                image.tag
            ))
            .basic_auth(&registry.username, Some(&registry.password))
            .header(
                "Accept",
                "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json",
            )
            .send()
            .map_err(|e| api_err("head manifest", e))?;
        if head.status().is_success() {
            continue;
        }
        let arches: &[&str] = if image.multi_arch {
            &["amd64", "arm64"]
        } else {
            &["amd64"]
        };
        let mut manifests = Vec::new();
        for (n, arch) in arches.iter().enumerate() {
            let mut layer_descs = Vec::new();
            let mut diff_ids = Vec::new();
            for (seed, size) in &image.layers {
                // Per-arch layers differ except the shared ones of amd64.
                let seed = if n == 0 { *seed } else { seed + 1_000_000 };
                let mounted = match known.get(&(seed, *size)) {
                    Some((d, diff_id, len, from))
                        if mount_blob(&client, registry, &repo, d, from)? =>
                    {
                        Some((d.clone(), diff_id.clone(), *len))
                    }
                    _ => None,
                };
                let (d, diff_id, len) = match mounted {
                    Some(m) => m,
                    None if *size >= STREAMED_FROM => {
                        let (d, len) = streamed_layer_digest(seed, *size);
                        pushed += push_streamed_layer(&client, registry, &repo, seed, *size, &d)?;
                        known.insert((seed, *size), (d.clone(), d.clone(), len, repo.clone()));
                        (d.clone(), d, len)
                    }
                    None => {
                        let (gz, diff_id) = layer(seed, *size);
                        pushed += push_blob(&client, registry, &repo, &gz)?;
                        known.insert(
                            (seed, *size),
                            (digest(&gz), diff_id.clone(), gz.len(), repo.clone()),
                        );
                        (digest(&gz), diff_id, gz.len())
                    }
                };
                let media_type = if *size >= STREAMED_FROM {
                    "application/vnd.oci.image.layer.v1.tar"
                } else {
                    "application/vnd.oci.image.layer.v1.tar+gzip"
                };
                layer_descs.push(json!({"mediaType": media_type, "digest": d, "size": len}));
                diff_ids.push(diff_id);
            }
            let mut image_config = json!({"Labels": {"ai.wallaroo.image": image.name, "ai.wallaroo.version": image.tag}});
            if image.runnable {
                // The program is the base layer, so the top layer stays the image's own.
                let (gz, diff_id) = app_layer(arch)?;
                pushed += push_blob(&client, registry, &repo, &gz)?;
                layer_descs.insert(0, json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest(&gz), "size": gz.len()}));
                diff_ids.insert(0, diff_id);
                image_config["Entrypoint"] = json!(["/app", image.name]);
            }
            let config = serde_json::to_vec(&json!({
                "architecture": arch, "os": "linux",
                "config": image_config,
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
            }))
            .expect("JSON");
            pushed += push_blob(&client, registry, &repo, &config)?;
            let manifest = serde_json::to_vec(&json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(&config), "size": config.len()},
                "layers": layer_descs,
            }))
            .expect("JSON");
            let reference = if image.multi_arch {
                digest(&manifest)
            } else {
                image.tag.to_string()
            };
            put_manifest(
                &client,
                registry,
                &repo,
                &reference,
                "application/vnd.oci.image.manifest.v1+json",
                &manifest,
            )?;
            manifests.push(json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest(&manifest), "size": manifest.len(),
                "platform": {"architecture": arch, "os": "linux"},
            }));
        }
        if image.multi_arch {
            let index = serde_json::to_vec(&json!({
                "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests,
            }))
            .expect("JSON");
            put_manifest(
                &client,
                registry,
                &repo,
                image.tag,
                "application/vnd.oci.image.index.v1+json",
                &index,
            )?;
        }
    }
    push_chart(env, preset, registry, path, chart_dir)?;
    Ok(pushed)
}

/// A gzip of a tar holding the sample program (built for `linux/{arch}`) as `/app`; returns
/// it and the tar's digest (the layer's diff id).
pub fn app_layer(arch: &str) -> Result<(Vec<u8>, String), Error> {
    let program = crate::provision::sample_app(arch)?;
    let bytes = std::fs::read(&program).map_err(|e| Error::io(&program, e))?;
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o755);
    header.set_mtime(0);
    header.set_cksum();
    tar.append_data(&mut header, "app", bytes.as_slice())
        .expect("in-memory tar");
    let tar = tar.into_inner().expect("in-memory tar");
    let diff_id = digest(&tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).expect("in-memory gzip");
    Ok((gz.finish().expect("in-memory gzip"), diff_id))
}

/// Pushes a runnable image of the sample program alone to `repo:tag`: an OCI index of
/// `arches` (one platform gives a plain manifest). The test node's sandbox (pause) image is
/// one. Returns the digest the tag names.
pub fn app_image(
    env: &Env,
    registry: &Registry,
    repo: &str,
    tag: &str,
    arches: &[&str],
) -> Result<String, Error> {
    one_layer_image(
        env,
        registry,
        repo,
        tag,
        arches,
        &OCI,
        json!({"Entrypoint": ["/app"]}),
        |_, arch| app_layer(arch),
    )
}

/// The media types of an image's parts, and whether its manifests are pretty-printed (as
/// docker writes them).
struct Flavor {
    manifest: &'static str,
    index: &'static str,
    config: &'static str,
    layer: &'static str,
    pretty: bool,
}

const OCI: Flavor = Flavor {
    manifest: "application/vnd.oci.image.manifest.v1+json",
    index: "application/vnd.oci.image.index.v1+json",
    config: "application/vnd.oci.image.config.v1+json",
    layer: "application/vnd.oci.image.layer.v1.tar+gzip",
    pretty: false,
};

const DOCKER: Flavor = Flavor {
    manifest: "application/vnd.docker.distribution.manifest.v2+json",
    index: "application/vnd.docker.distribution.manifest.list.v2+json",
    config: "application/vnd.docker.container.image.v1+json",
    layer: "application/vnd.docker.image.rootfs.diff.tar.gzip",
    pretty: true,
};

/// Pushes an image of one gzip layer per platform (`layer(n, arch)`, with its diff id) and
/// `config` as its container config to `repo:tag`: a manifest, or with several `arches` an
/// index of them. Returns the digest the tag names.
#[allow(clippy::too_many_arguments)]
fn one_layer_image(
    env: &Env,
    registry: &Registry,
    repo: &str,
    tag: &str,
    arches: &[&str],
    flavor: &Flavor,
    config: Value,
    layer: impl Fn(usize, &str) -> Result<(Vec<u8>, String), Error>,
) -> Result<String, Error> {
    let bytes = |v: &Value| {
        if flavor.pretty {
            serde_json::to_vec_pretty(v)
        } else {
            serde_json::to_vec(v)
        }
        .expect("JSON")
    };
    let client = https_client(&env.ca_file)?;
    let mut entries = Vec::new();
    let mut last = String::new();
    for (n, arch) in arches.iter().enumerate() {
        let (gz, diff_id) = layer(n, arch)?;
        push_blob(&client, registry, repo, &gz)?;
        let image_config = serde_json::to_vec(&json!({
            "architecture": arch, "os": "linux",
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }))
        .expect("JSON");
        push_blob(&client, registry, repo, &image_config)?;
        let manifest = bytes(&json!({
            "schemaVersion": 2,
            "mediaType": flavor.manifest,
            "config": {"mediaType": flavor.config, "digest": digest(&image_config), "size": image_config.len()},
            "layers": [{"mediaType": flavor.layer, "digest": digest(&gz), "size": gz.len()}],
        }));
        last = digest(&manifest);
        let reference = if arches.len() > 1 {
            last.clone()
        } else {
            tag.to_string()
        };
        put_manifest(
            &client,
            registry,
            repo,
            &reference,
            flavor.manifest,
            &manifest,
        )?;
        entries.push(json!({
            "mediaType": flavor.manifest, "digest": last, "size": manifest.len(),
            "platform": {"architecture": arch, "os": "linux"},
        }));
    }
    if arches.len() > 1 {
        let index = bytes(&json!({
            "schemaVersion": 2, "mediaType": flavor.index, "manifests": entries,
        }));
        put_manifest(&client, registry, repo, tag, flavor.index, &index)?;
        last = digest(&index);
    }
    Ok(last)
}

/// A gzip of a tar holding one file of seeded random bytes; returns it and the tar's
/// digest (the layer's diff id).
pub fn layer(seed: u64, size: usize) -> (Vec<u8>, String) {
    let mut data = vec![0u8; size];
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let b = x.to_le_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(size as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_cksum();
    tar.append_data(&mut header, format!("data/{seed}.bin"), data.as_slice())
        .expect("in-memory tar");
    let tar = tar.into_inner().expect("in-memory tar");
    let diff_id = digest(&tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).expect("in-memory gzip");
    (gz.finish().expect("in-memory gzip"), diff_id)
}

/// An uncompressed tar of one file of seeded random bytes, produced as it is read: the
/// same bytes every time for the same seed and size, never held whole.
pub struct LayerStream {
    header: Vec<u8>,
    size: usize,
    /// Bytes produced so far, header included.
    pos: usize,
    x: u64,
    word: [u8; 8],
}

impl LayerStream {
    pub fn new(seed: u64, size: usize) -> LayerStream {
        let mut header = tar::Header::new_gnu();
        header
            .set_path(format!("data/{seed}.bin"))
            .expect("short path");
        header.set_size(size as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        LayerStream {
            header: header.as_bytes().to_vec(),
            size,
            pos: 0,
            x: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            word: [0; 8],
        }
    }

    /// The whole tar's length: header, data padded to 512, and the two zero blocks.
    pub fn len(&self) -> usize {
        512 + self.size.div_ceil(512) * 512 + 1024
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}

impl std::io::Read for LayerStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let total = self.len();
        let mut n = 0;
        while n < buf.len() && self.pos < total {
            if self.pos < 512 {
                let take = (512 - self.pos).min(buf.len() - n);
                buf[n..n + take].copy_from_slice(&self.header[self.pos..self.pos + take]);
                n += take;
                self.pos += take;
            } else if self.pos < 512 + self.size {
                let off = self.pos - 512;
                if off.is_multiple_of(8) && buf.len() - n >= 8 && self.size - off >= 8 {
                    // A whole word at a time where it fits.
                    self.x ^= self.x << 13;
                    self.x ^= self.x >> 7;
                    self.x ^= self.x << 17;
                    buf[n..n + 8].copy_from_slice(&self.x.to_le_bytes());
                    n += 8;
                    self.pos += 8;
                } else {
                    if off.is_multiple_of(8) {
                        self.x ^= self.x << 13;
                        self.x ^= self.x >> 7;
                        self.x ^= self.x << 17;
                        self.word = self.x.to_le_bytes();
                    }
                    buf[n] = self.word[off % 8];
                    n += 1;
                    self.pos += 1;
                }
            } else {
                // Padding and the end-of-archive blocks.
                let take = (total - self.pos).min(buf.len() - n);
                buf[n..n + take].fill(0);
                n += take;
                self.pos += take;
            }
        }
        Ok(n)
    }
}

/// The digest and length of [`LayerStream`] for `seed` and `size`, read once.
pub fn streamed_layer_digest(seed: u64, size: usize) -> (String, usize) {
    let mut stream = LayerStream::new(seed, size);
    let len = stream.len();
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = std::io::Read::read(&mut stream, &mut buf).expect("generated");
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    (sha256_hex(&hasher.finalize()), len)
}

/// Uploads a [`LayerStream`] in one streamed PUT unless the registry has it; returns the
/// bytes sent.
fn push_streamed_layer(
    client: &Client,
    reg: &Registry,
    repo: &str,
    seed: u64,
    size: usize,
    d: &str,
) -> Result<u64, Error> {
    let Some(url) = start_upload(client, reg, repo, d)? else {
        return Ok(0);
    };
    let stream = LayerStream::new(seed, size);
    let len = stream.len() as u64;
    let put = client
        .put(url)
        .basic_auth(&reg.username, Some(&reg.password))
        .header("Content-Type", "application/octet-stream")
        .timeout(std::time::Duration::from_secs(3600))
        .body(reqwest::blocking::Body::sized(stream, len))
        .send()
        .map_err(|e| api_err("upload blob", e))?;
    if put.status() != reqwest::StatusCode::CREATED {
        return Err(api_err("upload blob", put.status()));
    }
    Ok(len)
}

pub fn digest(bytes: &[u8]) -> String {
    sha256_hex(&Sha256::digest(bytes))
}

/// `sha256:<hex>` of a finished SHA-256.
fn sha256_hex(hash: &[u8]) -> String {
    format!(
        "sha256:{}",
        hash.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

fn api_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Api {
        what: what.into(),
        message: e.to_string(),
    }
}

/// The URL to PUT blob `d` of `repo` to, or `None` when the registry already has it there.
fn start_upload(
    client: &Client,
    reg: &Registry,
    repo: &str,
    d: &str,
) -> Result<Option<String>, Error> {
    let base = format!("https://{}", reg.address());
    let head = client
        .head(format!("{base}/v2/{repo}/blobs/{d}"))
        .basic_auth(&reg.username, Some(&reg.password))
        .send()
        .map_err(|e| api_err("HEAD blob", e))?;
    if head.status().is_success() {
        return Ok(None);
    }
    let start = client
        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .basic_auth(&reg.username, Some(&reg.password))
        .send()
        .map_err(|e| api_err("start upload", e))?;
    if start.status() != reqwest::StatusCode::ACCEPTED {
        return Err(api_err("start upload", start.status()));
    }
    let location = start
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let url = if location.starts_with("http") {
        location
    } else {
        format!("{base}{location}")
    };
    let sep = if url.contains('?') { '&' } else { '?' };
    Ok(Some(format!("{url}{sep}digest={d}")))
}

/// Uploads a blob unless the registry has it; returns the bytes sent.
fn push_blob(client: &Client, reg: &Registry, repo: &str, bytes: &[u8]) -> Result<u64, Error> {
    let Some(url) = start_upload(client, reg, repo, &digest(bytes))? else {
        return Ok(0);
    };
    let put = client
        .put(url)
        .basic_auth(&reg.username, Some(&reg.password))
        .header("Content-Type", "application/octet-stream")
        .body(bytes.to_vec())
        .send()
        .map_err(|e| api_err("upload blob", e))?;
    if put.status() != reqwest::StatusCode::CREATED {
        return Err(api_err("upload blob", put.status()));
    }
    Ok(bytes.len() as u64)
}

/// Cross-repository mount of a blob the registry has under `from`; false if it declined.
fn mount_blob(
    client: &Client,
    reg: &Registry,
    repo: &str,
    d: &str,
    from: &str,
) -> Result<bool, Error> {
    let r = client
        .post(format!(
            "https://{}/v2/{repo}/blobs/uploads/?mount={d}&from={from}",
            reg.address()
        ))
        .basic_auth(&reg.username, Some(&reg.password))
        .send()
        .map_err(|e| api_err("mount blob", e))?;
    Ok(r.status() == reqwest::StatusCode::CREATED)
}

fn put_manifest(
    client: &Client,
    reg: &Registry,
    repo: &str,
    reference: &str,
    media_type: &str,
    bytes: &[u8],
) -> Result<(), Error> {
    let r = client
        .put(format!(
            "https://{}/v2/{repo}/manifests/{reference}",
            reg.address()
        ))
        .basic_auth(&reg.username, Some(&reg.password))
        .header("Content-Type", media_type)
        .body(bytes.to_vec())
        .send()
        .map_err(|e| api_err("put manifest", e))?;
    if r.status() != reqwest::StatusCode::CREATED {
        let status = r.status();
        return Err(api_err(
            &format!("put manifest {repo}:{reference}"),
            format!("{status}: {}", r.text().unwrap_or_default()),
        ));
    }
    Ok(())
}

/// Packages the sample chart for this preset (its version, image list and the sandbox's
/// Keycloak admin) and pushes it with the real helm.
fn push_chart(
    env: &Env,
    preset: &Preset,
    reg: &Registry,
    path: &str,
    chart_dir: &Path,
) -> Result<(), Error> {
    // A directory of its own per call: tests seed concurrently.
    let work = env
        .run_dir
        .join("chart-build")
        .join(crate::unique(preset.name));
    let _ = std::fs::remove_dir_all(&work);
    let chart = work.join("wallaroo");
    copy_dir(chart_dir, &chart)?;
    let values_path = chart.join("values.yaml");
    let mut values =
        std::fs::read_to_string(&values_path).map_err(|e| Error::io(&values_path, e))?;
    let cut = values
        .find("\nimages:")
        .map(|i| i + 1)
        .unwrap_or(values.len());
    values.truncate(cut);
    values.push_str("images:\n");
    for image in &preset.images {
        values.push_str(&format!("  {}: {}\n", image.name, image.tag));
    }
    values = values.replace(
        "  password: change-me",
        &format!("  password: {}", env.keycloak_password),
    );
    // The chart's default registry is where the images are: `helm template` with the
    // defaults renders the vendor's references, as the real chart does.
    values = values
        .lines()
        .map(|l| {
            if l.starts_with("imageRegistry:") {
                format!("imageRegistry: {}/{path}", reg.address())
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    std::fs::write(&values_path, values).map_err(|e| Error::io(&values_path, e))?;
    let chart_yaml = chart.join("Chart.yaml");
    let text = std::fs::read_to_string(&chart_yaml).map_err(|e| Error::io(&chart_yaml, e))?;
    // The full image list, as charts publish it for Artifact Hub.
    let mut listed = String::from("annotations:\n  artifacthub.io/images: |\n");
    for image in &preset.images {
        listed.push_str(&format!(
            "    - name: {0}\n      image: {1}/{path}/{0}:{2}\n",
            image.name,
            reg.address(),
            image.tag
        ));
    }
    let text: String = text
        .lines()
        .map(|l| {
            if l.starts_with("version:") {
                format!("version: {}", preset.version)
            } else if l.starts_with("appVersion:") {
                format!("appVersion: \"{}\"", preset.version)
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&chart_yaml, text + "\n" + &listed).map_err(|e| Error::io(&chart_yaml, e))?;

    let helm = |args: &[&str]| {
        let mut cmd = Command::new(&env.helm);
        cmd.args(args)
            .env("HELM_REGISTRY_CONFIG", work.join("helm-registry.json"))
            .env("HELM_CACHE_HOME", work.join("helm-cache"))
            .env("HELM_CONFIG_HOME", work.join("helm-config"))
            .current_dir(&work);
        cmd
    };
    let ca = env.ca_file.display().to_string();
    login_with_stdin(
        helm(&[
            "registry",
            "login",
            &reg.address(),
            "--username",
            &reg.username,
            "--password-stdin",
            "--ca-file",
            &ca,
        ]),
        &reg.password,
    )?;
    crate::process::run("helm package", &mut helm(&["package", "wallaroo"]))?;
    let channel = "2025-1";
    crate::process::run(
        "helm push",
        &mut helm(&[
            "push",
            &format!("wallaroo-{}.tgz", preset.version),
            &format!("oci://{}/{path}/{channel}", reg.address()),
            "--ca-file",
            &ca,
        ]),
    )?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

fn login_with_stdin(mut cmd: Command, password: &str) -> Result<(), Error> {
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| Error::Start {
            name: "helm".into(),
            message: e.to_string(),
        })?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(password.as_bytes())
        .map_err(|e| Error::io(Path::new("helm stdin"), e))?;
    let out = child
        .wait_with_output()
        .map_err(|e| Error::io(Path::new("helm"), e))?;
    if !out.status.success() {
        return Err(Error::Command {
            what: "helm registry login".into(),
            output: String::from_utf8_lossy(&out.stderr).into(),
        });
    }
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(to).map_err(|e| Error::io(to, e))?;
    for entry in std::fs::read_dir(from).map_err(|e| Error::io(from, e))? {
        let entry = entry.map_err(|e| Error::io(from, e))?;
        let dest = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &dest)?;
        } else {
            std::fs::copy(entry.path(), &dest).map_err(|e| Error::io(&dest, e))?;
        }
    }
    Ok(())
}

/// The manifest of `repo:reference` as the registry serves it (for tests).
pub fn fetch_manifest(
    client: &Client,
    reg: &Registry,
    repo: &str,
    reference: &str,
) -> Result<Value, Error> {
    let r = client
        .get(format!(
            "https://{}/v2/{repo}/manifests/{reference}",
            reg.address()
        ))
        .basic_auth(&reg.username, Some(&reg.password))
        .header(
            "Accept",
            "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json",
        )
        .send()
        .map_err(|e| api_err("get manifest", e))?;
    if !r.status().is_success() {
        return Err(api_err(
            &format!("get manifest {repo}:{reference}"),
            r.status(),
        ));
    }
    r.json().map_err(|e| api_err("manifest JSON", e))
}

/// Attaches a signature to `repo:tag` both ways tools do it: cosign's tag scheme (a
/// signature manifest under `sha256-<hex>.sig`) and an OCI 1.1 artifact whose `subject` is the
/// image (an SBOM), listed in the referrers tag schema's index under `sha256-<hex>` (for
/// registries without the referrers API, such as this distribution). Returns the two tags.
pub fn sign(env: &Env, reg: &Registry, repo: &str, tag: &str) -> Result<Vec<String>, Error> {
    let client = https_client(&env.ca_file)?;
    let head = client
        .head(format!(
            "https://{}/v2/{repo}/manifests/{tag}",
            reg.address()
        ))
        .basic_auth(&reg.username, Some(&reg.password))
        .header(
            "Accept",
            "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json",
        )
        .send()
        .map_err(|e| api_err("head manifest", e))?;
    let subject_digest = head.headers()["docker-content-digest"]
        .to_str()
        .unwrap_or_default()
        .to_string();
    let subject_type = head.headers()["content-type"]
        .to_str()
        .unwrap_or_default()
        .to_string();
    let subject_size: u64 = head
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let hex = subject_digest.trim_start_matches("sha256:").to_string();
    let empty = b"{}".to_vec();
    push_blob(&client, reg, repo, &empty)?;

    // cosign: a simple-signing payload, tagged after the image's digest.
    let payload = serde_json::to_vec(&json!({
        "critical": {"identity": {"docker-reference": format!("{}/{repo}", reg.address())},
                     "image": {"docker-manifest-digest": subject_digest}, "type": "cosign container image signature"},
        "optional": null,
    }))
    .expect("JSON");
    push_blob(&client, reg, repo, &payload)?;
    let sig = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(&empty), "size": empty.len()},
        "layers": [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json", "digest": digest(&payload), "size": payload.len(),
                    "annotations": {"dev.cosignproject.cosign/signature": "MEUCIQDtestsignature"}}],
    }))
    .expect("JSON");
    let sig_tag = format!("sha256-{hex}.sig");
    put_manifest(
        &client,
        reg,
        repo,
        &sig_tag,
        "application/vnd.oci.image.manifest.v1+json",
        &sig,
    )?;

    // OCI 1.1: an SBOM artifact with the image as its subject, and the fallback index.
    let sbom = serde_json::to_vec(&json!({"spdxVersion": "SPDX-2.3", "name": repo})).expect("JSON");
    push_blob(&client, reg, repo, &sbom)?;
    let artifact = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/spdx+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": digest(&empty), "size": empty.len()},
        "layers": [{"mediaType": "application/spdx+json", "digest": digest(&sbom), "size": sbom.len()}],
        "subject": {"mediaType": subject_type, "digest": subject_digest, "size": subject_size},
    }))
    .expect("JSON");
    let artifact_digest = digest(&artifact);
    put_manifest(
        &client,
        reg,
        repo,
        &artifact_digest,
        "application/vnd.oci.image.manifest.v1+json",
        &artifact,
    )?;
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": artifact_digest,
                       "size": artifact.len(), "artifactType": "application/spdx+json"}],
    }))
    .expect("JSON");
    let index_tag = format!("sha256-{hex}");
    put_manifest(
        &client,
        reg,
        repo,
        &index_tag,
        "application/vnd.oci.image.index.v1+json",
        &index,
    )?;
    Ok(vec![sig_tag, index_tag])
}

/// Pushes an image kept with docker v2 media types (as `docker push` and most vendor
/// registries keep images built by docker) to `repo:tag`: one schema 2 manifest, or with
/// several `arches` a manifest list of them. Layers come from `layer_seed`. Returns the
/// digest of what the tag names.
pub fn docker_image(
    env: &Env,
    registry: &Registry,
    repo: &str,
    tag: &str,
    layer_seed: u64,
    arches: &[&str],
) -> Result<String, Error> {
    one_layer_image(
        env,
        registry,
        repo,
        tag,
        arches,
        &DOCKER,
        json!({"Cmd": ["/bin/true"]}),
        |n, _| Ok(layer(layer_seed + n as u64, 24 << 10)),
    )
}

/// The sample chart at `sample`, made as strict as production charts are, into
/// `dir/wallaroo`: its templates `fail` unless the install's values name a distribution and
/// a domain (its defaults do not; the message shows private PyPI's password, to prove it is
/// scrubbed), and one image (`pypi-proxy`) runs only when private PyPI is on.
pub fn strict_chart(sample: &Path, dir: &Path) -> Result<std::path::PathBuf, Error> {
    let chart = dir.join("wallaroo");
    copy_dir(sample, &chart)?;
    let values_path = chart.join("values.yaml");
    let values = std::fs::read_to_string(&values_path)
        .map_err(|e| Error::io(&values_path, e))?
        .replace(
            "kubernetes_distribution: kurl",
            "kubernetes_distribution: \"\"",
        )
        .replace("domainSuffix: wallaroo.example.com", "domainSuffix: \"\"");
    let files = [
        ("values.yaml", values),
        (
            "templates/checks.yaml",
            r#"{{- if not (has .Values.kubernetes_distribution (list "aks" "eks" "gke" "oke" "kurl")) }}
{{- fail "kubernetes_distribution must be one of aks, eks, gke, oke, kurl" }}
{{- end }}
{{- if not .Values.domainSuffix }}
{{- fail (printf "domainSuffix is required (pypi password %s)" (.Values.privatePypi.password | default "none")) }}
{{- end }}
"#
            .to_string(),
        ),
        (
            "templates/pypi.yaml",
            r#"{{- if .Values.privatePypi.enabled }}
apiVersion: apps/v1
kind: Deployment
metadata: {name: pypi-proxy}
spec:
  selector: {matchLabels: {app: pypi-proxy}}
  template:
    metadata: {labels: {app: pypi-proxy}}
    spec:
      containers:
        - {name: proxy, image: "{{ .Values.imageRegistry }}/pypi-proxy:{{ .Chart.AppVersion }}"}
{{- end }}
"#
            .to_string(),
        ),
    ];
    for (name, text) in files {
        let path = chart.join(name);
        std::fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
    }
    Ok(chart)
}

/// The blobs (config and layers) of the single-platform image `repo:tag` in `registry`,
/// with their sizes: for tests that count what a mirror must send.
pub fn image_blobs(
    env: &Env,
    registry: &Registry,
    repo: &str,
    tag: &str,
) -> Result<Vec<(String, u64)>, Error> {
    let manifest: Value = https_client(&env.ca_file)?
        .get(format!("https://{}/v2/{repo}/manifests/{tag}", registry.address()))
        .header(
            "Accept",
            "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json",
        )
        .basic_auth(&registry.username, Some(&registry.password))
        .send()
        .and_then(|r| r.json())
        .map_err(|e| api_err("get manifest", e))?;
    let Some(layers) = manifest["layers"].as_array() else {
        return Err(api_err(
            &format!("{repo}:{tag}"),
            format!("not an image manifest: {manifest}"),
        ));
    };
    Ok(layers
        .iter()
        .chain([&manifest["config"]])
        .filter_map(|d| Some((d["digest"].as_str()?.to_string(), d["size"].as_u64()?)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn a_streamed_layer_is_a_tar_of_the_same_bytes_whatever_the_reads() {
        for size in [1000usize, 4096, 8 * 1000 + 3] {
            let mut whole = Vec::new();
            LayerStream::new(7, size).read_to_end(&mut whole).unwrap();
            assert_eq!(whole.len(), LayerStream::new(7, size).len());
            // Small, odd reads give the same bytes.
            let mut stream = LayerStream::new(7, size);
            let mut pieces = Vec::new();
            let mut buf = [0u8; 7];
            loop {
                let n = stream.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                pieces.extend_from_slice(&buf[..n]);
            }
            assert_eq!(pieces, whole);
            // A tar holding the file the in-memory generator makes, byte for byte.
            let (gz, _) = layer(7, size);
            let mut tar_bytes = Vec::new();
            flate2::read::GzDecoder::new(gz.as_slice())
                .read_to_end(&mut tar_bytes)
                .unwrap();
            let content = |bytes: &[u8]| -> Vec<u8> {
                let mut archive = tar::Archive::new(bytes);
                let mut entry = archive.entries().unwrap().next().unwrap().unwrap();
                let mut data = Vec::new();
                entry.read_to_end(&mut data).unwrap();
                data
            };
            assert_eq!(content(&whole), content(&tar_bytes));
            assert_eq!(content(&whole).len(), size);
            let (d, len) = streamed_layer_digest(7, size);
            assert_eq!((d, len), (digest(&whole), whole.len()));
        }
    }
}
