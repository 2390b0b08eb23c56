//! Talking to OCI registries, and mirroring images into the private registry.
//!
//! [`Registry`] speaks the distribution API over reqwest: Basic auth, Bearer tokens from a
//! `WWW-Authenticate` challenge (scoped, cached), a private CA. [`copy`] mirrors one image with
//! every platform of an index, verifying each blob's digest before it is pushed, skipping
//! blobs the target has, mounting blobs it has in another repository, and pushing manifests
//! only after their blobs. [`ImageKind`] makes that a resource of the engine; [`pins`]
//! resolves and keeps the digests it copies, [`release`] reads the release's image list from
//! its chart, and [`docker_config`] finds credentials where docker keeps them.

pub mod bundle;
mod copy;
pub mod docker_config;
mod image;
pub mod parts;
pub mod pins;
pub mod probe;
pub mod referrers;
mod registry;
pub mod release;
pub mod resume;
pub mod signing;
pub mod verify;
pub mod weight;

pub use copy::{
    BlobLedger, CopyOptions, CopyReport, LARGE_BLOB, LARGE_TRANSFERS_AT_ONCE, READS_AHEAD,
    TRANSFERS_AT_ONCE, blob_digests, copy, select_platforms,
};
pub use image::{ImageKind, MirrorStats, Signatures};
pub use registry::{
    BlobState, BlobStream, Credentials, ImageSource, Manifest, OciError, Registry, Removed,
    read_blob, sha256, size_text,
};
