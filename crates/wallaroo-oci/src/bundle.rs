//! Offline bundles: a release's images and chart in one tar file, for networks with no path
//! from the vendor registry to the private one.
//!
//! The archive is an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/...`) plus
//! `wallaroo-bundle.json`, which lists the images with their origins and digests and every
//! blob with its size. It is written as blobs stream in (each checked against its digest on
//! the way) and read in place: [`Bundle`] indexes where each blob sits in the tar and serves
//! manifests and blobs from there, so loading never unpacks to disk. A *delta* bundle leaves
//! out the blobs a previous release already brought (`omitted`); loading one needs them in
//! the private registry already.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use crate::copy::blob_digests;
use crate::registry::{BlobStream, ImageSource, Manifest, OciError, sha256};

/// The `wallaroo-bundle.json` format this version writes and reads.
pub const BUNDLE_FORMAT_VERSION: u32 = 1;
const BUNDLE_FILE: &str = "wallaroo-bundle.json";

/// `wallaroo-bundle.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BundleManifest {
    pub format_version: u32,
    /// The wallaroo version that wrote it.
    pub wallaroo_version: String,
    /// The release (`wallaroo { version }`) it carries.
    pub release: String,
    pub images: Vec<BundleImage>,
    /// Every blob in the archive (manifests included), with its size.
    pub blobs: BTreeMap<String, u64>,
    /// The manifests among the blobs, with their media types (not every manifest names its
    /// own: Helm's charts do not).
    pub manifests: BTreeMap<String, String>,
    /// Blobs the images need that a delta bundle leaves out: the previous release has them.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub omitted: BTreeSet<String>,
}

/// One image of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleImage {
    /// The reference it was read from, e.g. `registry.wallaroo.ai/wallaroo/x:1`.
    pub source: String,
    pub origin: String,
    /// Its top manifest's digest.
    pub digest: String,
}

/// What `create` wrote.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CreateReport {
    pub images: usize,
    pub blobs: usize,
    pub bytes: u64,
    pub omitted: usize,
}

fn err(path: &Path, message: impl std::fmt::Display) -> OciError {
    OciError::Registry {
        registry: format!("bundle {}", path.display()),
        message: message.to_string(),
    }
}

/// One image to put in a bundle: read `source` at `digest` from `from`.
pub struct BundleInput {
    pub source: String,
    pub origin: String,
    pub digest: String,
    pub from: Arc<dyn ImageSource>,
}

/// Writes a bundle of `images` for release `release` to `out` (through `out.partial`, renamed
/// at the end, so a failed run leaves nothing that looks whole). Blobs in `skip` are left
/// out and listed as omitted (a delta bundle).
pub async fn create(
    out: &Path,
    release: &str,
    images: &[BundleInput],
    skip: &BTreeSet<String>,
) -> Result<CreateReport, OciError> {
    let partial = PathBuf::from(format!("{}.partial", out.display()));
    let result = write_all(&partial, release, images, skip).await;
    match result {
        Ok(report) => {
            tokio::fs::rename(&partial, out)
                .await
                .map_err(|e| err(out, e))?;
            Ok(report)
        }
        Err(e) => {
            let _ = tokio::fs::remove_file(&partial).await;
            Err(e)
        }
    }
}

struct TarWriter {
    file: tokio::io::BufWriter<tokio::fs::File>,
    path: PathBuf,
    /// Where layer bytes written are counted (the run's [`wallaroo_engine::progress`]).
    progress: Option<Arc<wallaroo_engine::StepProgress>>,
}

impl TarWriter {
    fn header(name: &str, size: u64) -> [u8; 512] {
        let mut h = tar::Header::new_ustar();
        h.set_path(name).expect("short ASCII names");
        h.set_size(size);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        *h.as_bytes()
    }

    async fn pad(&mut self, size: u64) -> Result<(), OciError> {
        let rem = (512 - size % 512) % 512;
        self.file
            .write_all(&vec![0u8; rem as usize])
            .await
            .map_err(|e| err(&self.path, e))
    }

    async fn small(&mut self, name: &str, bytes: &[u8]) -> Result<(), OciError> {
        let header = Self::header(name, bytes.len() as u64);
        self.file
            .write_all(&header)
            .await
            .map_err(|e| err(&self.path, e))?;
        self.file
            .write_all(bytes)
            .await
            .map_err(|e| err(&self.path, e))?;
        self.pad(bytes.len() as u64).await
    }

    /// Streams a blob of known `size` in, checking its digest and length as it passes.
    async fn stream(
        &mut self,
        digest: &str,
        size: u64,
        mut body: BlobStream,
        source: &str,
    ) -> Result<(), OciError> {
        let name = blob_path(digest);
        let header = Self::header(&name, size);
        self.file
            .write_all(&header)
            .await
            .map_err(|e| err(&self.path, e))?;
        let mut hasher = Sha256::new();
        let mut written = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| err(&self.path, format!("{source}: {e}")))?;
            written += chunk.len() as u64;
            if written > size {
                break;
            }
            hasher.update(&chunk);
            self.file
                .write_all(&chunk)
                .await
                .map_err(|e| err(&self.path, e))?;
            if let Some(p) = &self.progress {
                p.add_moved(chunk.len() as u64);
            }
        }
        let got = format!("sha256:{}", hex(&hasher.finalize()));
        if written != size || got != digest {
            return Err(OciError::Digest {
                registry: source.to_string(),
                repo: format!("(bundle {})", self.path.display()),
                digest: digest.to_string(),
            });
        }
        self.pad(size).await
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn blob_path(digest: &str) -> String {
    format!("blobs/{}", digest.replacen(':', "/", 1))
}

/// The manifests of `images`, top and platform ones, read from their sources.
async fn manifests_of(path: &Path, image: &BundleInput) -> Result<Vec<Manifest>, OciError> {
    let (_, repo, _) = wallaroo_model::split_reference(&image.source);
    let src = image.from.as_ref();
    let top = src.manifest(&repo, &image.digest).await?.ok_or_else(|| {
        err(
            path,
            format!("{}@{} does not exist", image.source, image.digest),
        )
    })?;
    let mut manifests = vec![top.clone()];
    if top.is_index() {
        for child in top.json()["manifests"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            let d = child["digest"].as_str().unwrap_or_default();
            manifests.push(src.manifest(&repo, d).await?.ok_or_else(|| {
                err(
                    path,
                    format!("{}@{d}, listed in its index, does not exist", image.source),
                )
            })?);
        }
    }
    Ok(manifests)
}

/// The layer and config bytes a bundle of `images` will hold, and those it leaves out
/// because the previous release has them (`skip`): read from the manifests before writing,
/// so that progress knows its total from the start.
async fn planned_bytes(
    path: &Path,
    images: &[BundleInput],
    skip: &BTreeSet<String>,
) -> Result<(u64, u64), OciError> {
    let mut sizes: BTreeMap<String, u64> = BTreeMap::new();
    for image in images {
        for m in manifests_of(path, image).await? {
            sizes.extend(crate::copy::blob_sizes(&m));
        }
    }
    let (mut total, mut present) = (0, 0);
    for (digest, size) in &sizes {
        total += size;
        if skip.contains(digest) {
            present += size;
        }
    }
    Ok((total, present))
}

async fn write_all(
    path: &Path,
    release: &str,
    images: &[BundleInput],
    skip: &BTreeSet<String>,
) -> Result<CreateReport, OciError> {
    let file = tokio::fs::File::create(path)
        .await
        .map_err(|e| err(path, e))?;
    let progress = wallaroo_engine::progress::current();
    if let Some(p) = &progress {
        let (total, present) = planned_bytes(path, images, skip).await?;
        p.add_total(total);
        p.add_present(present);
    }
    let mut tar = TarWriter {
        file: tokio::io::BufWriter::with_capacity(1 << 20, file),
        path: path.to_path_buf(),
        progress,
    };
    let mut manifest = BundleManifest {
        format_version: BUNDLE_FORMAT_VERSION,
        wallaroo_version: env!("CARGO_PKG_VERSION").to_string(),
        release: release.to_string(),
        images: Vec::new(),
        blobs: BTreeMap::new(),
        manifests: BTreeMap::new(),
        omitted: BTreeSet::new(),
    };
    let mut index = Vec::new();
    let mut report = CreateReport::default();
    for image in images {
        let (_, repo, _) = wallaroo_model::split_reference(&image.source);
        let src = image.from.as_ref();
        let manifests = manifests_of(path, image).await?;
        let top = manifests[0].clone();
        for m in &manifests {
            if !manifest.blobs.contains_key(&m.digest) {
                tar.small(&blob_path(&m.digest), &m.bytes).await?;
                manifest
                    .blobs
                    .insert(m.digest.clone(), m.bytes.len() as u64);
                manifest
                    .manifests
                    .insert(m.digest.clone(), m.media_type.clone());
            }
            let json = m.json();
            let mut sizes: HashMap<String, u64> = HashMap::new();
            for d in json["layers"]
                .as_array()
                .into_iter()
                .flatten()
                .chain(Some(&json["config"]))
            {
                if let (Some(digest), Some(size)) = (d["digest"].as_str(), d["size"].as_u64()) {
                    sizes.insert(digest.to_string(), size);
                }
            }
            for digest in blob_digests(m) {
                if manifest.blobs.contains_key(&digest) || manifest.omitted.contains(&digest) {
                    continue;
                }
                if skip.contains(&digest) {
                    manifest.omitted.insert(digest);
                    continue;
                }
                let size = *sizes
                    .get(&digest)
                    .ok_or_else(|| err(path, format!("{}: {digest} has no size", image.source)))?;
                let body = src.blob(&repo, &digest).await?;
                tar.stream(&digest, size, body, &image.source).await?;
                manifest.blobs.insert(digest, size);
                report.bytes += size;
            }
        }
        // Tools built on containers/image (skopeo, podman, buildah) look an image up in
        // `index.json` only among OCI media types: an image kept with docker v2 media types
        // gets, first, an OCI index of its own that lists its platform manifests unchanged,
        // under the same name. Those tools find that one and copy the platform manifests byte
        // for byte; tools that read any media type (oras, wallaroo) take the last entry of a
        // name, the image itself.
        if let Some(wrapper) = oci_wrapper(src, &repo, &top).await? {
            let digest = sha256(&wrapper);
            if !manifest.blobs.contains_key(&digest) {
                tar.small(&blob_path(&digest), &wrapper).await?;
                manifest.blobs.insert(digest.clone(), wrapper.len() as u64);
            }
            index.push(serde_json::json!({
                "mediaType": OCI_INDEX,
                "digest": digest,
                "size": wrapper.len(),
                "annotations": {
                    "org.opencontainers.image.ref.name": image.source,
                    "io.wallaroo.origin": image.origin,
                    "io.wallaroo.wraps": top.digest,
                },
            }));
        }
        index.push(serde_json::json!({
            "mediaType": top.media_type,
            "digest": top.digest,
            "size": top.bytes.len(),
            "annotations": {
                "org.opencontainers.image.ref.name": image.source,
                "io.wallaroo.origin": image.origin,
            },
        }));
        manifest.images.push(BundleImage {
            source: image.source.clone(),
            origin: image.origin.clone(),
            digest: top.digest.clone(),
        });
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": index,
    });
    tar.small(
        "index.json",
        &serde_json::to_vec_pretty(&index).expect("JSON"),
    )
    .await?;
    tar.small("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)
        .await?;
    tar.small(
        BUNDLE_FILE,
        &serde_json::to_vec_pretty(&manifest).expect("JSON"),
    )
    .await?;
    tar.file
        .write_all(&[0u8; 1024])
        .await
        .map_err(|e| err(path, e))?;
    tar.file.flush().await.map_err(|e| err(path, e))?;
    tar.file
        .get_ref()
        .sync_all()
        .await
        .map_err(|e| err(path, e))?;
    report.images = manifest.images.len();
    report.blobs = manifest.blobs.len();
    report.omitted = manifest.omitted.len();
    Ok(report)
}

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// For an image whose top manifest has a docker v2 media type, an OCI index listing its
/// platform manifests as they are: a docker manifest list's entries, or the one docker
/// manifest with the platform its config names. None for OCI images (and anything else).
async fn oci_wrapper(
    src: &dyn ImageSource,
    repo: &str,
    top: &Manifest,
) -> Result<Option<Vec<u8>>, OciError> {
    let entries = match top.media_type.as_str() {
        DOCKER_LIST => top.json()["manifests"]
            .as_array()
            .cloned()
            .unwrap_or_default(),
        DOCKER_MANIFEST => {
            let config = top.json()["config"]["digest"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let config = crate::registry::read_blob(src, repo, &config, 4 << 20).await?;
            let config: serde_json::Value = serde_json::from_slice(&config).unwrap_or_default();
            let mut platform = serde_json::json!({
                "architecture": config["architecture"].as_str().unwrap_or("amd64"),
                "os": config["os"].as_str().unwrap_or("linux"),
            });
            if let Some(variant) = config["variant"].as_str() {
                platform["variant"] = variant.into();
            }
            vec![serde_json::json!({
                "mediaType": DOCKER_MANIFEST,
                "digest": top.digest,
                "size": top.bytes.len(),
                "platform": platform,
            })]
        }
        _ => return Ok(None),
    };
    Ok(Some(
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": entries,
        }))
        .expect("JSON"),
    ))
}

/// A bundle opened for reading: where each blob sits in the tar.
pub struct Bundle {
    path: PathBuf,
    pub manifest: BundleManifest,
    /// Blob digest -> (offset of its content, size).
    entries: HashMap<String, (u64, u64)>,
    /// Manifest media types by digest.
    media_types: HashMap<String, String>,
    /// (repository, tag) of each image's source reference -> top manifest digest.
    tags: HashMap<(String, String), String>,
}

impl Bundle {
    /// Indexes the archive at `path` (reading headers only; contents are skipped by seeking).
    pub fn open(path: &Path) -> Result<Bundle, OciError> {
        let file = std::fs::File::open(path).map_err(|e| err(path, e))?;
        let mut archive = tar::Archive::new(file);
        let mut entries = HashMap::new();
        let mut manifest = None;
        for entry in archive.entries_with_seek().map_err(|e| err(path, e))? {
            let mut entry = entry.map_err(|e| err(path, e))?;
            let name = entry
                .path()
                .map_err(|e| err(path, e))?
                .display()
                .to_string();
            if let Some(hex) = name.strip_prefix("blobs/sha256/") {
                entries.insert(
                    format!("sha256:{hex}"),
                    (entry.raw_file_position(), entry.size()),
                );
            } else if name == BUNDLE_FILE {
                let mut text = Vec::new();
                std::io::Read::read_to_end(&mut entry, &mut text).map_err(|e| err(path, e))?;
                let m: BundleManifest = serde_json::from_slice(&text)
                    .map_err(|e| err(path, format!("{BUNDLE_FILE}: {e}")))?;
                if m.format_version != BUNDLE_FORMAT_VERSION {
                    return Err(err(
                        path,
                        format!(
                            "bundle format {} (this wallaroo reads {BUNDLE_FORMAT_VERSION})",
                            m.format_version
                        ),
                    ));
                }
                manifest = Some(m);
            }
        }
        let manifest = manifest.ok_or_else(|| {
            err(
                path,
                format!("no {BUNDLE_FILE}: not a bundle written by `wallaroo bundle create`"),
            )
        })?;
        let tags = manifest
            .images
            .iter()
            .map(|i| {
                let (_, repo, tag) = wallaroo_model::split_reference(&i.source);
                ((repo, tag), i.digest.clone())
            })
            .collect();
        let media_types = manifest
            .manifests
            .iter()
            .map(|(d, t)| (d.clone(), t.clone()))
            .collect();
        Ok(Bundle {
            path: path.to_path_buf(),
            manifest,
            entries,
            media_types,
            tags,
        })
    }

    fn read_small(&self, file: &mut std::fs::File, digest: &str) -> Result<Vec<u8>, OciError> {
        use std::io::{Read, Seek};
        let (offset, size) = self.entries[digest];
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| err(&self.path, e))?;
        let mut bytes = vec![0u8; size as usize];
        file.read_exact(&mut bytes)
            .map_err(|e| err(&self.path, e))?;
        Ok(bytes)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the archive holds blob `digest`.
    pub fn has(&self, digest: &str) -> bool {
        self.entries.contains_key(digest)
    }
}

#[async_trait::async_trait]
impl ImageSource for Bundle {
    fn name(&self) -> String {
        format!("bundle {}", self.path.display())
    }

    async fn manifest(&self, repo: &str, reference: &str) -> Result<Option<Manifest>, OciError> {
        let digest = if reference.starts_with("sha256:") {
            reference.to_string()
        } else {
            match self.tags.get(&(repo.to_string(), reference.to_string())) {
                Some(d) => d.clone(),
                None => return Ok(None),
            }
        };
        let Some(media_type) = self.media_types.get(&digest) else {
            return Ok(None);
        };
        let mut file = std::fs::File::open(&self.path).map_err(|e| err(&self.path, e))?;
        let bytes = self.read_small(&mut file, &digest)?;
        if sha256(&bytes) != digest {
            return Err(OciError::Digest {
                registry: self.name(),
                repo: repo.into(),
                digest,
            });
        }
        Ok(Some(Manifest {
            media_type: media_type.clone(),
            digest,
            bytes,
        }))
    }

    async fn blob_from(
        &self,
        repo: &str,
        digest: &str,
        offset: u64,
    ) -> Result<BlobStream, OciError> {
        let Some(&(start, size)) = self.entries.get(digest) else {
            return self.blob(repo, digest).await;
        };
        let mut file = tokio::fs::File::open(&self.path)
            .await
            .map_err(|e| err(&self.path, e))?;
        file.seek(SeekFrom::Start(start + offset.min(size)))
            .await
            .map_err(|e| err(&self.path, e))?;
        Ok(read_stream(file.take(size - offset.min(size))))
    }

    async fn blob(&self, _repo: &str, digest: &str) -> Result<BlobStream, OciError> {
        let Some(&(offset, size)) = self.entries.get(digest) else {
            let why = if self.manifest.omitted.contains(digest) {
                "left out of this delta bundle (the previous release brought it): apply that release's bundle first"
            } else {
                "not in the bundle"
            };
            return Err(err(&self.path, format!("blob {digest} is {why}")));
        };
        let mut file = tokio::fs::File::open(&self.path)
            .await
            .map_err(|e| err(&self.path, e))?;
        file.seek(SeekFrom::Start(offset))
            .await
            .map_err(|e| err(&self.path, e))?;
        Ok(read_stream(file.take(size)))
    }
}

/// A file region as a stream of 256 KiB chunks.
fn read_stream(reader: tokio::io::Take<tokio::fs::File>) -> BlobStream {
    Box::pin(futures_util::stream::unfold(reader, |mut r| async move {
        let mut buf = vec![0u8; 256 << 10];
        match r.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(bytes::Bytes::from(buf)), r))
            }
            Err(e) => Some((Err(e), r)),
        }
    }))
}

/// What `verify` found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VerifyReport {
    pub images: usize,
    pub blobs: usize,
    pub bytes: u64,
    pub omitted: usize,
    /// Every problem found; empty when the bundle is whole.
    pub problems: Vec<String>,
}

/// Reads the whole archive once, hashing every blob, and checks that every blob the images
/// need is in it (or, in a delta bundle, listed as omitted).
pub fn verify(path: &Path) -> Result<VerifyReport, OciError> {
    verify_counted(path, None)
}

/// [`verify`], counting the bytes read and checked in `progress` (its total is the bytes the
/// bundle lists).
pub fn verify_counted(
    path: &Path,
    progress: Option<&wallaroo_engine::StepProgress>,
) -> Result<VerifyReport, OciError> {
    let bundle = Bundle::open(path)?;
    if let Some(p) = progress {
        p.add_total(bundle.manifest.blobs.values().sum());
    }
    let mut report = VerifyReport {
        images: bundle.manifest.images.len(),
        omitted: bundle.manifest.omitted.len(),
        ..VerifyReport::default()
    };
    // Reading and hashing overlap: this thread reads the archive, another hashes what it
    // read (in order, a few buffers behind), so the check goes at the speed of the slower of
    // the two rather than of both added up.
    enum Piece {
        Data(Vec<u8>, usize),
        End(String),
    }
    let (to_hasher, pieces) = std::sync::mpsc::sync_channel::<Piece>(4);
    let (give_back, spare) = std::sync::mpsc::channel::<Vec<u8>>();
    let hashing = std::thread::spawn(move || {
        let mut problems = Vec::new();
        let mut blobs = 0;
        let mut hasher = Sha256::new();
        for piece in pieces {
            match piece {
                Piece::Data(buf, n) => {
                    hasher.update(&buf[..n]);
                    let _ = give_back.send(buf);
                }
                Piece::End(hex_name) => {
                    blobs += 1;
                    if hex(&std::mem::take(&mut hasher).finalize()) != hex_name {
                        problems.push(format!("blob sha256:{hex_name} does not match its digest"));
                    }
                }
            }
        }
        (blobs, problems)
    });
    let read = (|| {
        let file = std::fs::File::open(path).map_err(|e| err(path, e))?;
        let mut archive = tar::Archive::new(file);
        for entry in archive.entries().map_err(|e| err(path, e))? {
            let mut entry = entry.map_err(|e| err(path, e))?;
            let name = entry
                .path()
                .map_err(|e| err(path, e))?
                .display()
                .to_string();
            let Some(hex_name) = name.strip_prefix("blobs/sha256/") else {
                continue;
            };
            loop {
                let mut buf = spare.try_recv().unwrap_or_else(|_| vec![0u8; 1 << 20]);
                let n = std::io::Read::read(&mut entry, &mut buf).map_err(|e| err(path, e))?;
                if n == 0 {
                    break;
                }
                report.bytes += n as u64;
                if let Some(p) = progress {
                    p.add_moved(n as u64);
                }
                if to_hasher.send(Piece::Data(buf, n)).is_err() {
                    break;
                }
            }
            let _ = to_hasher.send(Piece::End(hex_name.to_string()));
        }
        Ok::<_, OciError>(())
    })();
    drop(to_hasher);
    let (blobs, problems) = hashing.join().expect("the hashing thread does not panic");
    read?;
    report.blobs += blobs;
    report.problems.extend(problems);
    let mut file = std::fs::File::open(path).map_err(|e| err(path, e))?;
    for (digest, size) in &bundle.manifest.blobs {
        match bundle.entries.get(digest) {
            None => report
                .problems
                .push(format!("blob {digest} is listed but missing")),
            Some((_, s)) if s != size => report
                .problems
                .push(format!("blob {digest} has {s} bytes, {size} listed")),
            _ => {}
        }
    }
    for image in &bundle.manifest.images {
        let mut todo = vec![image.digest.clone()];
        while let Some(d) = todo.pop() {
            if !bundle.has(&d) {
                report
                    .problems
                    .push(format!("{}: manifest {d} is missing", image.source));
                continue;
            }
            let bytes = bundle.read_small(&mut file, &d)?;
            let m = Manifest {
                media_type: bundle.media_types.get(&d).cloned().unwrap_or_default(),
                digest: d.clone(),
                bytes,
            };
            if m.is_index() {
                for child in m.json()["manifests"].as_array().into_iter().flatten() {
                    if let Some(c) = child["digest"].as_str() {
                        todo.push(c.to_string());
                    }
                }
            }
            for b in blob_digests(&m) {
                if !bundle.has(&b) && !bundle.manifest.omitted.contains(&b) {
                    report
                        .problems
                        .push(format!("{}: blob {b} is missing", image.source));
                }
            }
        }
    }
    Ok(report)
}

/// The blobs (manifests, configs, layers) of the images `pins` name (source reference ->
/// top manifest digest), read from `sources` by host: what a previous release brought, for
/// a delta bundle.
pub async fn blobs_of(
    sources: &BTreeMap<String, Arc<dyn ImageSource>>,
    pins: &BTreeMap<String, String>,
) -> Result<BTreeSet<String>, OciError> {
    let mut out = BTreeSet::new();
    for (source, digest) in pins {
        let (host, repo, _) = wallaroo_model::split_reference(source);
        let Some(src) = sources.get(&host) else {
            continue;
        };
        let mut todo = vec![digest.clone()];
        while let Some(d) = todo.pop() {
            let Some(m) = src.manifest(&repo, &d).await? else {
                continue;
            };
            out.insert(d);
            if m.is_index() {
                for child in m.json()["manifests"].as_array().into_iter().flatten() {
                    if let Some(c) = child["digest"].as_str() {
                        todo.push(c.to_string());
                    }
                }
            }
            out.extend(blob_digests(&m));
        }
    }
    Ok(out)
}
