//! Resource kinds and the desired model.
//!
//! A kind is one implementation of [`ResourceKind`]: it reads a resource's live state and
//! creates, updates and deletes it. The engine does everything else (diffing, ordering,
//! concurrency, state), so adding a kind touches its own module and one registration line.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use crate::address::Address;

/// A resource's attributes by name.
pub type Attrs = BTreeMap<String, Value>;

/// An error from a kind's I/O, with enough words for the operator to act.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ResourceError {
    pub message: String,
}

impl ResourceError {
    pub fn new(message: impl Into<String>) -> ResourceError {
        ResourceError {
            message: message.into(),
        }
    }
}

/// An error and its causes in one line, innermost last (`error sending request: ...:
/// invalid peer certificate: UnknownIssuer`), for messages kinds put in [`ResourceError`].
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !parts.last().is_some_and(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = s.source();
    }
    parts.join(": ")
}

/// What a kind reads. A kind finds the live object by its prior identity when there is
/// one (so a changed force-new attribute shows as a replacement, not a new object).
pub struct ReadRequest<'a> {
    pub address: &'a Address,
    /// The desired attributes, when the resource is in the spec.
    pub desired: Option<&'a Attrs>,
    /// The attributes last applied, when the lockfile has the resource.
    pub prior: Option<&'a Attrs>,
    /// The read is an apply step (of a read-only kind), not a refresh: it may wait for
    /// its value to appear.
    pub during_apply: bool,
}

/// One kind of managed thing.
#[async_trait]
pub trait ResourceKind: Send + Sync {
    /// The kind's name as it appears in plans and the lockfile.
    fn name(&self) -> &'static str;

    /// Attributes whose change means delete-then-create instead of an update in place.
    fn force_new(&self) -> &'static [&'static str] {
        &[]
    }

    /// Attributes that are always sensitive for this kind (others may be marked by the spec).
    fn sensitive(&self) -> &'static [&'static str] {
        &[]
    }

    /// Whether resources of this kind stay when they leave the spec or on destroy (mirrored
    /// images): wallaroo then forgets them instead of deleting them, and the plan says so.
    fn kept_on_removal(&self) -> bool {
        false
    }

    /// Whether resources of this kind are only read (outputs), never changed.
    fn read_only(&self) -> bool {
        false
    }

    /// The live attributes, or `None` when the resource does not exist.
    async fn read(&self, req: ReadRequest<'_>) -> Result<Option<Attrs>, ResourceError>;

    /// Creates the resource; returns the attributes to record. Read-only kinds (outputs)
    /// keep the default, which refuses.
    async fn create(&self, address: &Address, _desired: &Attrs) -> Result<Attrs, ResourceError> {
        Err(ResourceError::new(format!(
            "{address} is read-only: it is read, never created"
        )))
    }

    /// Changes the resource in place; returns the attributes to record. By default an update
    /// is a create again: right for kinds that write declaratively (server-side apply,
    /// `helm upgrade --install`, an image copy), and a refusal for read-only kinds.
    async fn update(
        &self,
        address: &Address,
        _prior: &Attrs,
        desired: &Attrs,
    ) -> Result<Attrs, ResourceError> {
        self.create(address, desired).await
    }

    /// Deletes the resource. Read-only kinds have nothing to delete.
    async fn delete(&self, _address: &Address, _prior: &Attrs) -> Result<(), ResourceError> {
        Ok(())
    }

    /// Sends the writes that creating (`prior` is `None`) or updating the resource would
    /// make as a rehearsal that stores nothing, and says what the system answered. `None`:
    /// this kind cannot rehearse (the default; its writes go to no server that can, or are
    /// rehearsed elsewhere).
    async fn rehearse(
        &self,
        _address: &Address,
        _prior: Option<&Attrs>,
        _desired: &Attrs,
    ) -> Result<Option<crate::Rehearsal>, ResourceError> {
        Ok(None)
    }
}

/// One resource the spec asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredResource {
    pub address: Address,
    pub kind: String,
    pub attrs: Attrs,
    /// Attributes to hide, besides the kind's own sensitive ones.
    pub sensitive: BTreeSet<String>,
    pub depends_on: Vec<Address>,
    /// Attribute paths whose differences are neither changes nor drift
    /// (`lifecycle { ignore_changes }`).
    pub ignore_changes: Vec<String>,
}

/// Whether attribute path `path` falls under an `ignore_changes` entry (the entry itself, or
/// a key or item under it).
pub fn ignored(path: &str, ignore: &[String]) -> bool {
    ignore.iter().any(|i| {
        path == i
            || path
                .strip_prefix(i.as_str())
                .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
    })
}

impl DesiredResource {
    pub fn new(address: Address, kind: &str, attrs: Attrs) -> DesiredResource {
        DesiredResource {
            address,
            kind: kind.into(),
            attrs,
            sensitive: BTreeSet::new(),
            depends_on: Vec::new(),
            ignore_changes: Vec::new(),
        }
    }

    pub fn depends_on(mut self, deps: impl IntoIterator<Item = Address>) -> Self {
        self.depends_on.extend(deps);
        self
    }

    pub fn sensitive(mut self, attrs: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.sensitive.extend(attrs.into_iter().map(Into::into));
        self
    }
}

/// Everything the spec asks for, by address.
#[derive(Debug, Clone, Default)]
pub struct DesiredSet {
    pub resources: BTreeMap<Address, DesiredResource>,
    /// Things worth saying in the plan that do not stop it (a certificate near expiry).
    pub warnings: Vec<String>,
    /// `removed` blocks with `destroy = false`: resources under these addresses that leave
    /// the spec are forgotten, not deleted.
    pub forget: Vec<Address>,
}

impl DesiredSet {
    pub fn insert(&mut self, r: DesiredResource) {
        self.resources.insert(r.address.clone(), r);
    }
}

/// The kinds an engine knows, by name.
#[derive(Clone, Default)]
pub struct KindRegistry {
    kinds: BTreeMap<&'static str, Arc<dyn ResourceKind>>,
}

impl KindRegistry {
    pub fn new() -> KindRegistry {
        KindRegistry::default()
    }

    pub fn register(&mut self, kind: Arc<dyn ResourceKind>) -> &mut Self {
        self.kinds.insert(kind.name(), kind);
        self
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn ResourceKind>> {
        self.kinds.get(name)
    }
}
