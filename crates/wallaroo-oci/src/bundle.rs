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
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

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
    /// Programs the far side's apply runs (helm, wallaroo), carried beside the images.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<BundleTool>,
}

/// A program a bundle carries: `tools/{os}-{arch}/{name}` in the archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleTool {
    pub name: String,
    /// `linux/amd64`.
    pub platform: String,
    /// Its version as it reports it (`v3.16.4`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub digest: String,
    pub size: u64,
}

impl BundleTool {
    /// Where it sits in the archive.
    pub fn entry(&self) -> String {
        format!("tools/{}/{}", self.platform.replace('/', "-"), self.name)
    }
}

/// A program to put in a bundle, from the local disk.
#[derive(Debug, Clone)]
pub struct ToolFile {
    pub name: String,
    pub platform: String,
    pub version: Option<String>,
    pub path: PathBuf,
}

/// The small file that travels with a bundle's parts (`release.tar.index.json`): every part,
/// every file in the archive and every tool, by digest. Signed, it vouches for every byte.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BundleIndex {
    pub format_version: u32,
    pub wallaroo_version: String,
    pub release: String,
    /// The archive's length, all parts together.
    pub size: u64,
    pub parts: Vec<BundlePart>,
    /// Each file of the archive: name -> (offset of its content, size, digest).
    pub files: BTreeMap<String, (u64, u64, String)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<BundleTool>,
}

/// One part of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundlePart {
    /// Its file name, beside the index.
    pub file: String,
    pub size: u64,
    /// The part's checksum (`xxh3-128:...`), to check a copy of it alone for transport
    /// damage; none for a bundle in one file. What the part holds is vouched for by the
    /// SHA-256 digest of every file, which the index names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
}

/// The index of the bundle at `path` (`release.tar` -> `release.tar.index.json`).
pub fn index_path(path: &Path) -> PathBuf {
    if path.to_string_lossy().ends_with(INDEX_SUFFIX) {
        return path.to_path_buf();
    }
    PathBuf::from(format!("{}{INDEX_SUFFIX}", path.display()))
}

/// The bundle an index belongs to (`release.tar.index.json` -> `release.tar`).
fn base_of(path: &Path) -> PathBuf {
    let text = path.to_string_lossy();
    match text.strip_suffix(INDEX_SUFFIX) {
        Some(b) => PathBuf::from(b),
        None => path.to_path_buf(),
    }
}

const INDEX_SUFFIX: &str = ".index.json";
/// The signature beside an index, as `cosign sign-blob` would write it.
pub fn signature_path(index: &Path) -> PathBuf {
    PathBuf::from(format!("{}.sig", index.display()))
}

/// How `create` lays a bundle out beyond its images.
#[derive(Debug, Default)]
pub struct CreateOptions<'a> {
    /// Numbered parts of at most this many bytes instead of one file.
    pub split: Option<u64>,
    /// Signs the index with this key.
    pub sign: Option<&'a crate::signing::SigningKey>,
    pub tools: Vec<ToolFile>,
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
    /// The files written: the parts (or the one archive), then the index and its signature.
    pub files: Vec<PathBuf>,
    /// The programs carried, by name.
    pub tools: Vec<String>,
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
/// at the end; a failed or stopped run removes it). Blobs in `skip` are left
/// out and listed as omitted (a delta bundle).
pub async fn create(
    out: &Path,
    release: &str,
    images: &[BundleInput],
    skip: &BTreeSet<String>,
) -> Result<CreateReport, OciError> {
    create_with(out, release, images, skip, &CreateOptions::default()).await
}

/// [`create`], with parts, a signature and tools as `options` say. The parts (or the one
/// archive) are written as `.partial` files and renamed once whole; the index (each part's
/// digest, each file's place and digest) is written last, then its signature.
pub async fn create_with(
    out: &Path,
    release: &str,
    images: &[BundleInput],
    skip: &BTreeSet<String>,
    options: &CreateOptions<'_>,
) -> Result<CreateReport, OciError> {
    let mut unfinished = Unfinished(Vec::new());
    let report = write_all(out, release, images, skip, options, &mut unfinished).await?;
    unfinished.0.clear();
    Ok(report)
}

/// The `.partial` archive of a `create` that has not finished: removed when `create` fails or
/// is stopped (its future dropped, as on Ctrl-C), so that no file that looks like a bundle,
/// nor the disk space claimed for one, is left behind.
struct Unfinished(Vec<PathBuf>);

impl Drop for Unfinished {
    fn drop(&mut self) {
        for path in self.0.drain(..) {
            let _ = std::fs::remove_file(path);
        }
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

/// How many blobs `create` reads from their sources at once. One TLS stream from a registry
/// reaches about 400-600 MB/s here; several fill the disk.
const CREATE_CONCURRENCY: usize = 4;
/// Bytes of a blob's stream passed on together to be hashed and written (one write call).
const WRITE_BUF: usize = 1 << 20;

/// One file of the archive, in the order it is laid out.
enum Entry {
    /// Written from memory: manifests, wrappers, `index.json`, `oci-layout`, the bundle file.
    Small { name: String, bytes: Vec<u8> },
    /// A layer or config, streamed from `images[image]`'s source.
    Blob {
        digest: String,
        size: u64,
        image: usize,
    },
    /// A program copied from the local disk.
    Tool {
        name: String,
        path: PathBuf,
        size: u64,
        digest: String,
    },
}

impl Entry {
    fn name(&self) -> String {
        match self {
            Entry::Small { name, .. } | Entry::Tool { name, .. } => name.clone(),
            Entry::Blob { digest, .. } => blob_path(digest),
        }
    }

    fn size(&self) -> u64 {
        match self {
            Entry::Small { bytes, .. } => bytes.len() as u64,
            Entry::Blob { size, .. } | Entry::Tool { size, .. } => *size,
        }
    }

    fn digest(&self) -> String {
        match self {
            Entry::Small { bytes, .. } => sha256(bytes),
            Entry::Blob { digest, .. } | Entry::Tool { digest, .. } => digest.clone(),
        }
    }
}

/// The digest and length of a local file.
fn file_digest(path: &Path) -> std::io::Result<(String, u64)> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        len += n as u64;
    }
    Ok((format!("sha256:{}", hex(&hasher.finalize())), len))
}

fn tar_header(name: &str, size: u64) -> [u8; 512] {
    let mut h = tar::Header::new_ustar();
    h.set_path(name).expect("short ASCII names");
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    *h.as_bytes()
}

/// What goes into the archive, decided from the images' manifests before a layer is read.
struct Layout {
    /// Its files, in order; the bundle file (listing the rest) last.
    entries: Vec<Entry>,
    manifest: BundleManifest,
    /// The bytes of the layers and configs left out (a delta bundle's, brought before).
    omitted_bytes: u64,
}

/// How many images' manifests `create` reads at once.
const MANIFEST_READS: usize = 8;

async fn lay_out(
    path: &Path,
    release: &str,
    images: &[BundleInput],
    skip: &BTreeSet<String>,
    tools: &[ToolFile],
) -> Result<Layout, OciError> {
    let mut manifest = BundleManifest {
        format_version: BUNDLE_FORMAT_VERSION,
        wallaroo_version: env!("CARGO_PKG_VERSION").to_string(),
        release: release.to_string(),
        images: Vec::new(),
        blobs: BTreeMap::new(),
        manifests: BTreeMap::new(),
        omitted: BTreeSet::new(),
        tools: Vec::new(),
    };
    // Each image's manifests (and the OCI wrapper of a docker one, below), several images at
    // once: at a release's 40 images and a far registry, one after another is seconds.
    let read: Vec<(Vec<Manifest>, Option<Vec<u8>>)> =
        futures_util::stream::iter(images.iter().map(|image| async move {
            let (_, repo, _) = wallaroo_model::split_reference(&image.source);
            let manifests = manifests_of(path, image).await?;
            let wrapper = oci_wrapper(image.from.as_ref(), &repo, &manifests[0]).await?;
            Ok::<_, OciError>((manifests, wrapper))
        }))
        .buffered(MANIFEST_READS)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let mut omitted_bytes = 0;
    let mut entries = Vec::new();
    let mut index = Vec::new();
    for (i, (image, (manifests, wrapper))) in images.iter().zip(read).enumerate() {
        let top = manifests[0].clone();
        for m in &manifests {
            if !manifest.blobs.contains_key(&m.digest) {
                entries.push(Entry::Small {
                    name: blob_path(&m.digest),
                    bytes: m.bytes.clone(),
                });
                manifest
                    .blobs
                    .insert(m.digest.clone(), m.bytes.len() as u64);
                manifest
                    .manifests
                    .insert(m.digest.clone(), m.media_type.clone());
            }
            let sizes = crate::copy::blob_sizes(m);
            for digest in blob_digests(m) {
                if manifest.blobs.contains_key(&digest) || manifest.omitted.contains(&digest) {
                    continue;
                }
                let size = *sizes
                    .get(&digest)
                    .ok_or_else(|| err(path, format!("{}: {digest} has no size", image.source)))?;
                if skip.contains(&digest) {
                    manifest.omitted.insert(digest);
                    omitted_bytes += size;
                    continue;
                }
                manifest.blobs.insert(digest.clone(), size);
                entries.push(Entry::Blob {
                    digest,
                    size,
                    image: i,
                });
            }
        }
        // Tools built on containers/image (skopeo, podman, buildah) look an image up in
        // `index.json` only among OCI media types: an image kept with docker v2 media types
        // gets, first, an OCI index of its own that lists its platform manifests unchanged,
        // under the same name. Those tools find that one and copy the platform manifests byte
        // for byte; tools that read any media type (oras, wallaroo) take the last entry of a
        // name, the image itself.
        if let Some(wrapper) = wrapper {
            let digest = sha256(&wrapper);
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
            if !manifest.blobs.contains_key(&digest) {
                manifest.blobs.insert(digest.clone(), wrapper.len() as u64);
                entries.push(Entry::Small {
                    name: blob_path(&digest),
                    bytes: wrapper,
                });
            }
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
    for t in tools {
        let (digest, size) = {
            let p = t.path.clone();
            tokio::task::spawn_blocking(move || file_digest(&p))
                .await
                .expect("hashing does not panic")
                .map_err(|e| err(path, format!("{}: {e}", t.path.display())))?
        };
        let tool = BundleTool {
            name: t.name.clone(),
            platform: t.platform.clone(),
            version: t.version.clone(),
            digest: digest.clone(),
            size,
        };
        entries.push(Entry::Tool {
            name: tool.entry(),
            path: t.path.clone(),
            size,
            digest,
        });
        manifest.tools.push(tool);
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": index,
    });
    entries.push(Entry::Small {
        name: "index.json".into(),
        bytes: serde_json::to_vec_pretty(&index).expect("JSON"),
    });
    entries.push(Entry::Small {
        name: "oci-layout".into(),
        bytes: br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
    });
    entries.push(Entry::Small {
        name: BUNDLE_FILE.into(),
        bytes: serde_json::to_vec_pretty(&manifest).expect("JSON"),
    });
    Ok(Layout {
        entries,
        manifest,
        omitted_bytes,
    })
}

/// Writes the archive: every entry's place is known from the manifests (a header of 512
/// bytes, the content, padding to 512), so the files get their whole length at once (the
/// disk's space is claimed before a byte is read: a disk too small fails at the start, not
/// after hours) and [`CREATE_CONCURRENCY`] blobs stream into their places side by side, each
/// checked against its digest and length on the way and never written past its place. With
/// `split`, the same bytes go to numbered parts, a write across a part's end continuing in
/// the next. Then each part is hashed (from the page cache, the parts side by side) for the
/// index, which is written last and signed.
async fn write_all(
    out: &Path,
    release: &str,
    images: &[BundleInput],
    skip: &BTreeSet<String>,
    options: &CreateOptions<'_>,
    unfinished: &mut Unfinished,
) -> Result<CreateReport, OciError> {
    let Layout {
        entries,
        manifest,
        omitted_bytes,
    } = lay_out(out, release, images, skip, &options.tools).await?;
    let progress = wallaroo_engine::progress::current();
    if let Some(p) = &progress {
        let streamed: u64 = entries
            .iter()
            .filter(|e| matches!(e, Entry::Blob { .. }))
            .map(Entry::size)
            .sum();
        p.add_total(streamed + omitted_bytes);
        p.add_present(omitted_bytes);
    }

    let mut offsets = Vec::with_capacity(entries.len());
    let mut end = 0u64;
    for e in &entries {
        offsets.push(end);
        end += 512 + e.size().div_ceil(512) * 512;
    }
    // Two zero blocks end a tar.
    let length = end + 1024;

    // The files: one archive, or parts of at most `split` bytes.
    let (finals, lengths): (Vec<PathBuf>, Vec<u64>) = match options.split {
        Some(size) if size < length => {
            let n = length.div_ceil(size) as usize;
            (1..=n)
                .map(|i| {
                    let len = if i == n {
                        length - size * (n as u64 - 1)
                    } else {
                        size
                    };
                    (crate::parts::part_path(out, i), len)
                })
                .unzip()
        }
        _ => (vec![out.to_path_buf()], vec![length]),
    };
    let partials: Vec<PathBuf> = finals
        .iter()
        .map(|p| PathBuf::from(format!("{}.partial", p.display())))
        .collect();
    unfinished.0.extend(partials.iter().cloned());
    let mut parts = crate::parts::Parts::create(&partials, &lengths).map_err(|e| {
        err(
            out,
            format!(
                "cannot set aside {} for the bundle on its disk: {e}",
                crate::registry::size_text(length)
            ),
        )
    })?;
    // In parts, each part is hashed (for the index) as soon as all its bytes are written,
    // while the rest stream in: the bytes each part gets (headers and contents; padding
    // stays the zeros the disk gave) are counted down as they are written.
    let hasher = (finals.len() > 1).then(|| {
        let mut to_write = vec![0u64; finals.len()];
        for (e, at) in entries.iter().zip(&offsets) {
            for (i, _, len) in parts.segments(*at, 512 + e.size()) {
                to_write[i] += len;
            }
        }
        let (tracker, whole) = parts.track(&to_write);
        let reader = parts.clone();
        let n = finals.len();
        let task = tokio::task::spawn_blocking(move || {
            let mut digests = vec![None; n];
            let mut buf = vec![0u8; 1 << 20];
            while let Ok(i) = whole.recv() {
                let file = std::fs::File::open(&reader.paths()[i])?;
                let (_, checksum) = part_checksum(&file, &mut buf)?;
                digests[i] = Some(checksum);
            }
            Ok::<_, std::io::Error>(digests)
        });
        (tracker, task)
    });
    {
        let mut headers = Vec::new();
        for (e, at) in entries.iter().zip(&offsets) {
            headers.push((*at, tar_header(&e.name(), e.size()).to_vec()));
            if let Entry::Small { bytes, .. } = e {
                headers.push((at + 512, bytes.clone()));
            }
        }
        let tools: Vec<(u64, PathBuf)> = entries
            .iter()
            .zip(&offsets)
            .filter_map(|(e, at)| match e {
                Entry::Tool { path, .. } => Some((at + 512, path.clone())),
                _ => None,
            })
            .collect();
        let parts = parts.clone();
        let written = tokio::task::spawn_blocking(move || {
            for (at, bytes) in headers {
                parts.write_all_at(&bytes, at)?;
            }
            for (at, path) in tools {
                let bytes = std::fs::read(&path)?;
                parts.write_all_at(&bytes, at)?;
            }
            Ok::<_, std::io::Error>(())
        })
        .await
        .expect("the header writer does not panic");
        written.map_err(|e| err(out, e))?;
    }

    // Largest first, so the longest stream starts at once and the small ones fill in beside it.
    let mut blobs: Vec<(u64, &str, u64, &BundleInput)> = entries
        .iter()
        .zip(&offsets)
        .filter_map(|(e, at)| match e {
            Entry::Blob {
                digest,
                size,
                image,
            } => Some((at + 512, digest.as_str(), *size, &images[*image])),
            _ => None,
        })
        .collect();
    blobs.sort_by_key(|b| std::cmp::Reverse(b.2));
    let mut streams = futures_util::stream::iter(blobs.iter().map(|&(at, digest, size, image)| {
        stream_blob(out, &parts, at, digest, size, image, progress.clone())
    }))
    .buffer_unordered(CREATE_CONCURRENCY);
    let mut bytes = 0;
    while let Some(done) = streams.next().await {
        bytes += done?;
    }
    drop(streams);

    // The closing fsync, while the last parts are hashed.
    let sync = {
        let parts = parts.clone();
        tokio::task::spawn_blocking(move || parts.sync_all())
    };
    // Each part's digest, to check one alone (a bundle in one file needs none: the index
    // lists every file's digest).
    let digests: Vec<Option<String>> = match hasher {
        Some((tracker, task)) => {
            tracker.close();
            let mut found = task
                .await
                .expect("hashing does not panic")
                .map_err(|e| err(out, e))?;
            // A part the count missed (none should be) is read now.
            for (i, d) in found.iter_mut().enumerate() {
                if d.is_none() {
                    let file = std::fs::File::open(&parts.paths()[i]).map_err(|e| err(out, e))?;
                    let (_, checksum) =
                        part_checksum(&file, &mut vec![0u8; 1 << 20]).map_err(|e| err(out, e))?;
                    *d = Some(checksum);
                }
            }
            found
        }
        None => vec![None],
    };
    sync.await
        .expect("fsync does not panic")
        .map_err(|e| err(out, e))?;
    drop(parts);

    // Whole: the parts take their names, stale files of an earlier bundle of that name go,
    // and the index (then its signature) is written last.
    for (partial, fin) in partials.iter().zip(&finals) {
        std::fs::rename(partial, fin).map_err(|e| err(fin, e))?;
    }
    unfinished.0.clear();
    unfinished.0.extend(finals.iter().cloned());
    if finals.len() > 1 {
        let _ = std::fs::remove_file(out);
    }
    let first_stale = if finals.len() > 1 {
        finals.len() + 1
    } else {
        1
    };
    for n in first_stale.. {
        let stale = crate::parts::part_path(out, n);
        if !stale.exists() {
            break;
        }
        let _ = std::fs::remove_file(stale);
    }
    let index_file = index_path(out);
    let signature_file = signature_path(&index_file);
    let _ = std::fs::remove_file(&signature_file);
    let index = BundleIndex {
        format_version: BUNDLE_FORMAT_VERSION,
        wallaroo_version: manifest.wallaroo_version.clone(),
        release: release.to_string(),
        size: length,
        parts: finals
            .iter()
            .zip(&lengths)
            .zip(digests)
            .map(|((p, &size), digest)| BundlePart {
                file: p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                size,
                checksum: digest,
            })
            .collect(),
        files: entries
            .iter()
            .zip(&offsets)
            .map(|(e, at)| (e.name(), (at + 512, e.size(), e.digest())))
            .collect(),
        tools: manifest.tools.clone(),
    };
    let index_bytes = serde_json::to_vec_pretty(&index).expect("JSON");
    std::fs::write(&index_file, &index_bytes).map_err(|e| err(&index_file, e))?;
    let mut files = finals.clone();
    files.push(index_file.clone());
    if let Some(key) = options.sign {
        let sig = key.sign(&index_bytes).map_err(|e| err(&index_file, e))?;
        std::fs::write(&signature_file, sig).map_err(|e| err(&signature_file, e))?;
        files.push(signature_file);
    }
    Ok(CreateReport {
        images: manifest.images.len(),
        blobs: manifest.blobs.len(),
        bytes,
        omitted: manifest.omitted.len(),
        files,
        tools: manifest.tools.iter().map(|t| t.name.clone()).collect(),
    })
}

/// Each part's checksum, the parts read side by side.
fn part_checksums(parts: &crate::parts::Parts) -> std::io::Result<Vec<String>> {
    let n = parts.paths().len();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, VERIFY_THREADS)
        .min(n);
    let results: Vec<std::io::Result<Vec<(usize, String)>>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut buf = vec![0u8; 1 << 20];
                    let mut out = Vec::new();
                    while let Some(i) =
                        Some(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
                            .filter(|i| *i < n)
                    {
                        let file = std::fs::File::open(&parts.paths()[i])?;
                        read_sequentially(&file);
                        out.push((i, part_checksum(&file, &mut buf)?.1));
                    }
                    Ok(out)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("a checksum thread does not panic"))
            .collect()
    });
    let mut sums = vec![String::new(); n];
    for r in results {
        for (i, d) in r? {
            sums[i] = d;
        }
    }
    Ok(sums)
}

/// How many written bytes of a blob `create` lets the kernel hold before asking it to start
/// writing them to the disk.
const WRITE_BACK: u64 = 16 << 20;

/// Asks the kernel to start writing `len` bytes of `file` from `offset` to the disk, without
/// waiting (Linux `sync_file_range`; elsewhere nothing). The archive streams in far faster
/// than the kernel's own write-back starts, so without this most of it would still be in
/// memory at the closing fsync, which would then wait for all of it.
pub(crate) fn start_write_back(file: &std::fs::File, offset: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: a valid open file descriptor and plain integers; a failure only means the
        // closing fsync has more to do.
        unsafe {
            libc::sync_file_range(
                file.as_raw_fd(),
                offset as libc::off64_t,
                len as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len);
}

/// Gives `file` its `length`, with the disk space for it where the filesystem can set space
/// aside (Linux `fallocate`); elsewhere, or where the filesystem cannot, only its length.
pub(crate) fn claim_space(file: &std::fs::File, length: u64) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: a valid open file descriptor and plain integers.
        let r = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, length as libc::off_t) };
        if r == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EOPNOTSUPP) {
            return Err(e);
        }
    }
    file.set_len(length)
}

/// Streams blob `digest` of `image` into the archive at `path`, at `at`: the stream's chunks
/// are passed on in batches of about [`WRITE_BUF`] bytes (not copied) to a blocking task that
/// hashes them and writes each batch with one `writev` through a file handle of its own,
/// while the next batch arrives. More bytes than `size`, fewer, or other bytes than `digest`
/// fail the bundle; nothing is ever written past the blob's place. A connection lost part
/// way is taken up again where it stopped, up to the copy's number of attempts.
async fn stream_blob(
    path: &Path,
    parts: &crate::parts::Parts,
    at: u64,
    digest: &str,
    size: u64,
    image: &BundleInput,
    progress: Option<Arc<wallaroo_engine::StepProgress>>,
) -> Result<u64, OciError> {
    let (_, repo, _) = wallaroo_model::split_reference(&image.source);
    let mut body = image.from.blob(&repo, digest).await?;
    let parts = parts.clone();
    let (batches, mut to_write) = tokio::sync::mpsc::channel::<Vec<bytes::Bytes>>(2);
    let writer = tokio::task::spawn_blocking(move || {
        let mut hasher = Sha256::new();
        let (mut offset, mut unflushed) = (at, 0);
        while let Some(batch) = to_write.blocking_recv() {
            let mut len = 0;
            for chunk in &batch {
                hasher.update(chunk);
                len += chunk.len();
            }
            // Positional: one file or parts, a batch across a part's end split there.
            parts.write_chunks_at(&batch, offset)?;
            offset += len as u64;
            unflushed += len as u64;
            if unflushed >= WRITE_BACK {
                parts.start_write_back(offset - unflushed, unflushed);
                unflushed = 0;
            }
            if let Some(p) = &progress {
                p.add_moved(len as u64);
            }
        }
        Ok::<_, std::io::Error>(format!("sha256:{}", hex(&hasher.finalize())))
    });
    let mut batch = Vec::new();
    let mut batched = 0;
    let mut received = 0u64;
    let mut read_error = None;
    let mut attempt = 1;
    while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            // A connection lost part way: the blob goes on from the byte where it stopped
            // (a Range request), its hash state kept.
            Err(_) if attempt < crate::copy::BLOB_ATTEMPTS => {
                tokio::time::sleep(crate::registry::backoff(attempt, None)).await;
                attempt += 1;
                match image.from.blob_from(&repo, digest, received).await {
                    Ok(rest) => {
                        body = rest;
                        continue;
                    }
                    Err(e) => {
                        read_error = Some(e);
                        break;
                    }
                }
            }
            Err(e) => {
                read_error = Some(err(path, format!("{}: {e}", image.source)));
                break;
            }
        };
        received += chunk.len() as u64;
        if received > size {
            break;
        }
        batched += chunk.len();
        batch.push(chunk);
        // A batch is also cut at 512 chunks: `writev` takes at most 1,024.
        if batched >= WRITE_BUF || batch.len() >= 512 {
            batched = 0;
            if batches.send(std::mem::take(&mut batch)).await.is_err() {
                break;
            }
        }
    }
    if !batch.is_empty() && received <= size && read_error.is_none() {
        let _ = batches.send(batch).await;
    }
    drop(batches);
    let hashed = writer.await.expect("the blob writer does not panic");
    if let Some(e) = read_error {
        return Err(e);
    }
    let got = hashed.map_err(|e| err(path, e))?;
    if received != size || got != digest {
        return Err(OciError::Digest {
            registry: image.source.clone(),
            repo: format!("(bundle {})", path.display()),
            digest: digest.to_string(),
        });
    }
    Ok(size)
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
    parts: crate::parts::Parts,
    pub manifest: BundleManifest,
    /// The index that travels with it (every part's and file's digest), when it has one.
    pub index: Option<BundleIndex>,
    /// Blob digest -> (offset of its content, size).
    entries: HashMap<String, (u64, u64)>,
    /// Every file of the archive by name -> (offset of its content, size).
    files: HashMap<String, (u64, u64)>,
    /// Manifest media types by digest.
    media_types: HashMap<String, String>,
    /// (repository, tag) of each image's source reference -> top manifest digest.
    tags: HashMap<(String, String), String>,
}

/// A bundle's parts as its index names them (beside the index), each there and whole in
/// length; or the one archive at `path`. A missing or short part is named by its number.
fn locate(path: &Path) -> Result<(crate::parts::Parts, Option<BundleIndex>), OciError> {
    let index_file = index_path(path);
    let base = base_of(&index_file);
    let index: Option<BundleIndex> = match std::fs::read(&index_file) {
        Ok(bytes) => Some(
            serde_json::from_slice(&bytes)
                .map_err(|e| err(&index_file, format!("not a bundle index: {e}")))?,
        ),
        Err(_) => None,
    };
    let Some(index) = index else {
        let parts =
            crate::parts::Parts::open(std::slice::from_ref(&base)).map_err(|e| err(&base, e))?;
        return Ok((parts, None));
    };
    let dir = index_file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let n = index.parts.len();
    let mut paths = Vec::new();
    let mut problems = Vec::new();
    for (i, part) in index.parts.iter().enumerate() {
        let p = dir.join(&part.file);
        match std::fs::metadata(&p) {
            Err(_) => problems.push(format!("part {} of {n} ({}) is missing", i + 1, part.file)),
            Ok(m) if m.len() < part.size => problems.push(format!(
                "part {} of {n} ({}) is cut short: {} of its {} bytes",
                i + 1,
                part.file,
                m.len(),
                part.size
            )),
            Ok(m) if m.len() > part.size => problems.push(format!(
                "part {} of {n} ({}) has {} bytes, not the {} its index names",
                i + 1,
                part.file,
                m.len(),
                part.size
            )),
            Ok(_) => {}
        }
        paths.push(p);
    }
    if !problems.is_empty() {
        return Err(err(&base, problems.join("; ")));
    }
    let parts = crate::parts::Parts::open(&paths).map_err(|e| err(&base, e))?;
    Ok((parts, Some(index)))
}

impl Bundle {
    /// Indexes the archive at `path` (reading headers only; contents are skipped by
    /// seeking): one file, or the parts its index (`path.index.json`, or `path` itself when
    /// it is the index) names, read in place.
    pub fn open(path: &Path) -> Result<Bundle, OciError> {
        let (parts, index) = locate(path)?;
        let path = base_of(&index_path(path));
        let path = path.as_path();
        let length = parts.len();
        let mut archive = tar::Archive::new(parts.reader());
        let mut entries = HashMap::new();
        let mut files = HashMap::new();
        let mut manifest = None;
        for entry in archive.entries_with_seek().map_err(|e| err(path, e))? {
            let mut entry = entry.map_err(|e| err(path, e))?;
            let name = entry
                .path()
                .map_err(|e| err(path, e))?
                .display()
                .to_string();
            // A copy that stopped part way ends inside an entry (and has lost the bundle
            // file, which comes last): say so, not that it is no bundle.
            let end = entry.raw_file_position() + entry.size();
            if end > length {
                return Err(err(
                    path,
                    format!(
                        "the archive is cut short: it ends at byte {length}, inside {name} (which \
                         ends at byte {end}); copy it again from its source"
                    ),
                ));
            }
            files.insert(name.clone(), (entry.raw_file_position(), entry.size()));
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
            parts,
            manifest,
            index,
            entries,
            files,
            media_types,
            tags,
        })
    }

    fn read_region(&self, offset: u64, size: u64) -> Result<Vec<u8>, OciError> {
        let mut bytes = vec![0u8; size as usize];
        let mut done = 0;
        while done < bytes.len() {
            let n = self
                .parts
                .read_at(&mut bytes[done..], offset + done as u64)
                .map_err(|e| err(&self.path, e))?;
            if n == 0 {
                return Err(err(&self.path, "the archive ends early"));
            }
            done += n;
        }
        Ok(bytes)
    }

    fn read_small(&self, digest: &str) -> Result<Vec<u8>, OciError> {
        let (offset, size) = self.entries[digest];
        self.read_region(offset, size)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the archive holds blob `digest`.
    pub fn has(&self, digest: &str) -> bool {
        self.entries.contains_key(digest)
    }

    /// Writes the programs the bundle carries for `platform` (all, when `None`, each under a
    /// directory of its platform) into `dir`, executable, each checked against its digest:
    /// their paths.
    pub fn extract_tools(
        &self,
        dir: &Path,
        platform: Option<&str>,
    ) -> Result<Vec<PathBuf>, OciError> {
        let mut out = Vec::new();
        for t in &self.manifest.tools {
            if platform.is_some_and(|p| p != t.platform) {
                continue;
            }
            let target = if platform.is_some() {
                dir.join(&t.name)
            } else {
                dir.join(t.platform.replace('/', "-")).join(&t.name)
            };
            self.extract_tool(t, &target)?;
            out.push(target);
        }
        Ok(out)
    }

    /// Writes program `tool` to `target`, executable, checked against its digest (through a
    /// `.partial` file renamed when whole).
    pub fn extract_tool(&self, tool: &BundleTool, target: &Path) -> Result<(), OciError> {
        let Some(&(at, size)) = self.files.get(&tool.entry()) else {
            return Err(err(
                &self.path,
                format!("{} is listed but not in the archive", tool.entry()),
            ));
        };
        let bytes = self.read_region(at, size)?;
        if sha256(&bytes) != tool.digest {
            return Err(err(
                &self.path,
                format!("{} does not match its digest {}", tool.entry(), tool.digest),
            ));
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| err(parent, e))?;
        }
        let partial = PathBuf::from(format!("{}.partial", target.display()));
        std::fs::write(&partial, &bytes).map_err(|e| err(&partial, e))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| err(&partial, e))?;
        std::fs::rename(&partial, target).map_err(|e| err(target, e))
    }

    /// Checks the bundle's index against `key` (its signature) and that the index names the
    /// same program `name` for `platform` as the archive's list: so that a program about to
    /// run is the one that was signed, before the whole bundle's bytes are checked.
    pub fn check_tool_signed(
        &self,
        name: &str,
        platform: &str,
        key: &crate::verify::VerifyKey,
    ) -> Result<(), OciError> {
        let index_file = index_path(&self.path);
        let index = read_index(&index_file, Some(key))?;
        let listed = self.tool(name, platform).map(|t| t.digest.clone());
        let signed = index
            .tools
            .iter()
            .find(|t| t.name == name && t.platform == platform)
            .map(|t| t.digest.clone());
        if listed.is_none() || listed != signed {
            return Err(err(
                &self.path,
                format!("its {name} for {platform} is not the one its signed index names"),
            ));
        }
        Ok(())
    }

    /// The program `name` the bundle carries for `platform`.
    pub fn tool(&self, name: &str, platform: &str) -> Option<&BundleTool> {
        self.manifest
            .tools
            .iter()
            .find(|t| t.name == name && t.platform == platform)
    }
}

/// This machine's platform as bundles name it (`linux/amd64`).
pub fn host_platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    format!("{}/{arch}", std::env::consts::OS)
}

#[async_trait::async_trait]
impl ImageSource for Bundle {
    fn name(&self) -> String {
        format!("bundle {}", self.path.display())
    }

    fn multiplexed(&self) -> bool {
        true
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
        let bytes = self.read_small(&digest)?;
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
        let skip = offset.min(size);
        Ok(self.parts.stream(start + skip, size - skip))
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
        Ok(self.parts.stream(offset, size))
    }
}

/// A part's checksum: XXH3-128 of its bytes, `xxh3-128:<hex>`. Parts are checked for
/// transport (a copy cut short or damaged); what is in them is vouched for by the SHA-256
/// digest of every file, which the index lists too.
fn part_checksum(file: &std::fs::File, buf: &mut [u8]) -> std::io::Result<(u64, String)> {
    use std::os::unix::fs::FileExt;
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut done = 0u64;
    loop {
        let n = file.read_at(buf, done)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        done += n as u64;
    }
    Ok((done, format!("xxh3-128:{:032x}", hasher.digest128())))
}

/// [`hash_region`] through any positional reader (a bundle's parts).
fn hash_with(
    mut read_at: impl FnMut(&mut [u8], u64) -> std::io::Result<usize>,
    at: u64,
    size: u64,
    buf: &mut [u8],
    progress: Option<&wallaroo_engine::StepProgress>,
) -> std::io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut done = 0u64;
    while done < size {
        let want = (size - done).min(buf.len() as u64) as usize;
        let n = read_at(&mut buf[..want], at + done)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        done += n as u64;
        if let Some(p) = progress {
            p.add_moved(n as u64);
        }
    }
    Ok((done, format!("sha256:{}", hex(&hasher.finalize()))))
}

/// Tells the kernel that `file` will be read front to back (a larger read-ahead).
pub(crate) fn read_sequentially(file: &std::fs::File) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: a valid open file descriptor and plain integers; only advice.
        unsafe {
            libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_SEQUENTIAL);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = file;
}

/// What `verify` found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VerifyReport {
    pub images: usize,
    pub blobs: usize,
    pub bytes: u64,
    pub omitted: usize,
    /// How many parts were read (1 for a bundle in one file).
    pub parts: usize,
    /// The key whose signature of the index was checked.
    pub signed_by: Option<String>,
    /// Every problem found; empty when the bundle is whole.
    pub problems: Vec<String>,
}

/// Reads the whole archive once, hashing every blob, and checks that every blob the images
/// need is in it (or, in a delta bundle, listed as omitted).
pub fn verify(path: &Path) -> Result<VerifyReport, OciError> {
    verify_counted(path, None)
}

/// At most this many threads read and hash a bundle's blobs in `verify` (one per core, at
/// least two so that one reads while another hashes).
const VERIFY_THREADS: usize = 4;

/// [`verify`], counting the bytes read and checked in `progress` (its total is the bytes the
/// bundle lists).
pub fn verify_counted(
    path: &Path,
    progress: Option<&wallaroo_engine::StepProgress>,
) -> Result<VerifyReport, OciError> {
    verify_with(path, None, progress)
}

/// `release.tar.002` beside `release.tar.index.json`: the index and the part's number.
fn lone_part(path: &Path) -> Option<(PathBuf, usize)> {
    let text = path.to_string_lossy();
    let (base, n) = text.rsplit_once('.')?;
    if n.len() < 3 || !n.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let index = index_path(Path::new(base));
    index.exists().then(|| (index, n.parse().unwrap_or(0)))
}

/// Checks one part alone against the index beside it (to check a copy before the next part
/// is made).
fn verify_part(
    path: &Path,
    index_file: &Path,
    key: Option<&crate::verify::VerifyKey>,
    progress: Option<&wallaroo_engine::StepProgress>,
) -> Result<VerifyReport, OciError> {
    let index = read_index(index_file, key)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = index.parts.len();
    let Some((i, part)) = index.parts.iter().enumerate().find(|(_, p)| p.file == name) else {
        return Err(err(
            path,
            format!("not a part its index ({}) names", index_file.display()),
        ));
    };
    if let Some(p) = progress {
        p.add_total(part.size);
    }
    let mut report = VerifyReport {
        parts: 1,
        ..VerifyReport::default()
    };
    let file = std::fs::File::open(path).map_err(|e| err(path, e))?;
    read_sequentially(&file);
    let len = file.metadata().map_err(|e| err(path, e))?.len();
    let (read, digest) = part_checksum(&file, &mut vec![0u8; 1 << 20]).map_err(|e| err(path, e))?;
    if let Some(p) = progress {
        p.add_moved(read);
    }
    report.bytes = read;
    if len != part.size {
        report.problems.push(format!(
            "part {} of {n} ({}) has {len} bytes, not {}",
            i + 1,
            part.file,
            part.size
        ));
    } else if part.checksum.as_ref().is_some_and(|d| *d != digest) {
        report.problems.push(format!(
            "part {} of {n} ({}) does not match its checksum in the index",
            i + 1,
            part.file
        ));
    }
    Ok(report)
}

/// The index at `index_file`, its signature checked first when `key` is given.
fn read_index(
    index_file: &Path,
    key: Option<&crate::verify::VerifyKey>,
) -> Result<BundleIndex, OciError> {
    let bytes = std::fs::read(index_file).map_err(|e| err(index_file, e))?;
    if let Some(key) = key {
        check_signature(index_file, &bytes, key)?;
    }
    serde_json::from_slice(&bytes).map_err(|e| err(index_file, format!("not a bundle index: {e}")))
}

/// Refuses an index whose signature (beside it, `.sig`) `key` does not verify.
fn check_signature(
    index_file: &Path,
    bytes: &[u8],
    key: &crate::verify::VerifyKey,
) -> Result<(), OciError> {
    let sig_file = signature_path(index_file);
    let sig = std::fs::read_to_string(&sig_file).map_err(|_| {
        err(
            index_file,
            format!(
                "the bundle is not signed: there is no {}",
                sig_file.display()
            ),
        )
    })?;
    if !crate::signing::verify_blob(key, bytes, &sig) {
        return Err(err(
            index_file,
            format!(
                "its signature ({}) is not one the key {} made: the index was altered or signed with another key",
                sig_file.display(),
                key.name
            ),
        ));
    }
    Ok(())
}

/// [`verify_counted`], with the index's signature checked against `key` first (refused
/// without one). The index (when the bundle has one) vouches for every byte: each part is
/// hashed whole, and where one differs, the files in it are hashed to name the one the damage
/// is in. A single part given alone (`release.tar.002`) is checked by itself.
pub fn verify_with(
    path: &Path,
    key: Option<&crate::verify::VerifyKey>,
    progress: Option<&wallaroo_engine::StepProgress>,
) -> Result<VerifyReport, OciError> {
    if let Some((index_file, _)) = lone_part(path) {
        return verify_part(path, &index_file, key, progress);
    }
    let index_file = index_path(path);
    let mut signed_by = None;
    if let Some(key) = key {
        let bytes = std::fs::read(&index_file).map_err(|_| {
            err(
                path,
                format!(
                    "the bundle is not signed: it has no index ({}) to carry a signature",
                    index_file.display()
                ),
            )
        })?;
        check_signature(&index_file, &bytes, key)?;
        signed_by = Some(key.name.clone());
    }
    let bundle = Bundle::open(path)?;
    let mut report = VerifyReport {
        images: bundle.manifest.images.len(),
        omitted: bundle.manifest.omitted.len(),
        parts: bundle.parts.paths().len(),
        signed_by,
        ..VerifyReport::default()
    };
    let mut problems = Vec::new();
    // Every blob against its digest, side by side; then the programs; then, with an index,
    // every other file against the digest it names and each part against its checksum
    // (what frames the files), naming the file a damaged part's difference is in.
    let (bytes, found) = hash_blobs(&bundle, path, progress)?;
    report.bytes = bytes;
    report.blobs = bundle.entries.len();
    let mut damaged: BTreeSet<String> = found
        .iter()
        .filter_map(|p| p.split_whitespace().nth(1).map(String::from))
        .collect();
    problems.extend(found);
    let mut buf = vec![0u8; 1 << 20];
    if let Some(p) = progress {
        p.add_total(bundle.manifest.tools.iter().map(|t| t.size).sum());
    }
    for t in &bundle.manifest.tools {
        let Some(&(at, size)) = bundle.files.get(&t.entry()) else {
            problems.push(format!("{} is listed but missing", t.entry()));
            continue;
        };
        let (read, got) = hash_with(
            |b, o| bundle.parts.read_at(b, o),
            at,
            size,
            &mut buf,
            progress,
        )
        .map_err(|e| err(path, e))?;
        report.bytes += read;
        if got != t.digest || size != t.size {
            problems.push(format!("{} does not match its digest", t.entry()));
            damaged.insert(t.entry());
        }
    }
    if let Some(index) = &bundle.index {
        for (name, (at, size, digest)) in &index.files {
            if name.starts_with("blobs/") || name.starts_with("tools/") {
                continue;
            }
            let (_, got) = hash_with(
                |b, o| bundle.parts.read_at(b, o),
                *at,
                *size,
                &mut buf,
                None,
            )
            .map_err(|e| err(path, e))?;
            if got != *digest {
                problems.push(format!("{name} does not match its digest in the index"));
                damaged.insert(name.clone());
            }
        }
        if index.parts.iter().all(|p| p.checksum.is_some()) {
            let sums = part_checksums(&bundle.parts).map_err(|e| err(path, e))?;
            let n = index.parts.len();
            let mut start = 0u64;
            for (i, (part, got)) in index.parts.iter().zip(&sums).enumerate() {
                let end = start + part.size;
                if part.checksum.as_ref() != Some(got) {
                    let culprits: Vec<String> = index
                        .files
                        .iter()
                        .filter(|(name, (at, size, digest))| {
                            *at < end
                                && at + size > start
                                && (damaged.contains(*name) || damaged.contains(digest.as_str()))
                        })
                        .map(|(name, _)| describe_file(&bundle.manifest, name))
                        .collect();
                    let where_ = if culprits.is_empty() {
                        "in the archive's framing (a tar header or padding), not in a file"
                            .to_string()
                    } else {
                        format!("in {}", culprits.join(", "))
                    };
                    problems.push(format!(
                        "part {} of {n} ({}) does not match its checksum in the index: the difference is {where_}",
                        i + 1,
                        part.file
                    ));
                }
                start = end;
            }
        }
    }
    problems.sort();
    report.problems.extend(problems);
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
            let bytes = bundle.read_small(&d)?;
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

/// A file of the archive as a message names it: a blob with the image it belongs to.
fn describe_file(manifest: &BundleManifest, name: &str) -> String {
    match name.strip_prefix("blobs/sha256/") {
        Some(hex) => {
            let digest = format!("sha256:{hex}");
            let what = if manifest.manifests.contains_key(&digest) {
                "manifest"
            } else {
                "blob"
            };
            format!("{what} {digest}")
        }
        None => name.to_string(),
    }
}

/// Every blob hashed where it sits, several at once (one SHA-256 stream is slower than a
/// disk): largest first, so that the longest starts at once and the rest share the other
/// threads. The bytes read, and the blobs that do not match.
fn hash_blobs(
    bundle: &Bundle,
    path: &Path,
    progress: Option<&wallaroo_engine::StepProgress>,
) -> Result<(u64, Vec<String>), OciError> {
    if let Some(p) = progress {
        p.add_total(bundle.manifest.blobs.values().sum());
    }
    let mut blobs: Vec<(&str, u64, u64)> = bundle
        .entries
        .iter()
        .map(|(digest, &(at, size))| (digest.as_str(), at, size))
        .collect();
    blobs.sort_by_key(|&(digest, _, size)| (std::cmp::Reverse(size), digest));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, VERIFY_THREADS);
    bundle.parts.read_sequentially();
    let checked: Vec<Result<(u64, Vec<String>), std::io::Error>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut buf = vec![0u8; 1 << 20];
                    let (mut bytes, mut problems) = (0u64, Vec::new());
                    while let Some(&(digest, at, size)) =
                        blobs.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
                    {
                        let (read, got) =
                            hash_with(|b, o| bundle.parts.read_at(b, o), at, size, &mut buf, progress)?;
                        bytes += read;
                        if read < size {
                            problems.push(format!(
                                "blob {digest} is cut short: the archive ends after {read} of its {size} bytes"
                            ));
                        } else if got != digest {
                            problems.push(format!("blob {digest} does not match its digest"));
                        }
                    }
                    Ok((bytes, problems))
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("a verify thread does not panic"))
            .collect()
    });
    let (mut total, mut problems) = (0, Vec::new());
    for result in checked {
        let (bytes, found) = result.map_err(|e| err(path, e))?;
        total += bytes;
        problems.extend(found);
    }
    Ok((total, problems))
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
