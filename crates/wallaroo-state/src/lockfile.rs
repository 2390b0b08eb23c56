//! The lockfile's data.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The lockfile format this version of wallaroo reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// `wallaroo.lock`: the state of one installation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Lockfile {
    /// Always [`FORMAT_VERSION`].
    pub format_version: u32,
    /// Identifies this installation's history; a plan made for another lineage is refused.
    pub lineage: String,
    /// Increases with every write; a saved plan records the serial it was made against.
    pub serial: u64,
    /// Salt of every sensitive hash in this file (random per lineage).
    pub salt: String,
    /// Per resource address, what was last applied. Image digest pins live here, in each
    /// `image[...]` resource's `source_digest` (the source manifest a tag resolved to at the
    /// first plan) and `digest` (what the target tag holds): later plans mirror those digests
    /// even if the vendor re-tags, until `--refresh-pins`.
    #[serde(default)]
    pub resources: BTreeMap<String, ResourceState>,
    /// Values read after apply, e.g. `api_lb_ip`.
    #[serde(default)]
    pub outputs: BTreeMap<String, OutputState>,
}

/// What wallaroo last applied to one resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ResourceState {
    /// The resource kind, e.g. `helm_release`.
    pub kind: String,
    /// Attributes as applied; sensitive attributes are absent here.
    pub attributes: BTreeMap<String, serde_json::Value>,
    /// Salted hashes of the sensitive attributes, by attribute name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sensitive_hashes: BTreeMap<String, String>,
    /// Addresses this resource depended on when applied (delete runs in the reverse order).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
}

/// A recorded output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OutputState {
    /// The value; `null` when the output is sensitive (only its hash is kept).
    pub value: serde_json::Value,
    #[serde(default)]
    pub sensitive: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
}

impl Lockfile {
    /// An empty lockfile with a new lineage and salt.
    pub fn new() -> Lockfile {
        Lockfile {
            format_version: FORMAT_VERSION,
            lineage: new_lineage(),
            serial: 0,
            salt: new_salt(),
            resources: BTreeMap::new(),
            outputs: BTreeMap::new(),
        }
    }
}

impl Default for Lockfile {
    fn default() -> Self {
        Lockfile::new()
    }
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the OS has a random source");
    hex(&buf)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new random salt.
pub fn new_salt() -> String {
    random_hex(16)
}

/// A UUID-shaped random lineage id.
fn new_lineage() -> String {
    let h = random_hex(16);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The salted hash stored instead of a sensitive value: SHA-256 over the salt, the
/// attribute's address and name, and the value's canonical JSON.
pub fn hash_sensitive(
    salt: &str,
    address: &str,
    attribute: &str,
    value: &serde_json::Value,
) -> String {
    let mut h = Sha256::new();
    for part in [salt, "\0", address, "\0", attribute, "\0"] {
        h.update(part.as_bytes());
    }
    h.update(
        serde_json::to_vec(value)
            .expect("JSON values serialize")
            .as_slice(),
    );
    format!("sha256:{}", hex(&h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_depend_on_salt_and_value_but_never_contain_it() {
        let v = serde_json::json!("hunter2");
        let a = hash_sensitive("salt-a", "user[\"a@b.c\"]", "password", &v);
        assert_eq!(
            a,
            hash_sensitive("salt-a", "user[\"a@b.c\"]", "password", &v)
        );
        assert_ne!(
            a,
            hash_sensitive("salt-b", "user[\"a@b.c\"]", "password", &v)
        );
        assert_ne!(
            a,
            hash_sensitive(
                "salt-a",
                "user[\"a@b.c\"]",
                "password",
                &serde_json::json!("hunter3")
            )
        );
        assert!(!a.contains("hunter2") && a.starts_with("sha256:") && a.len() == 71);
    }

    #[test]
    fn lineages_differ() {
        assert_ne!(Lockfile::new().lineage, Lockfile::new().lineage);
    }
}
