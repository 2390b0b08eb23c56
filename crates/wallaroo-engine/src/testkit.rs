//! A resource kind of plain files under a root directory, for the engine's own tests and
//! benchmarks. It is a real kind doing real I/O (not a stand-in for a cluster kind): it lets
//! the engine's ordering, concurrency, failure and crash behaviour be shown without a
//! cluster. Each step can be slowed down or made to fail, and every step's start and end
//! time is recorded so tests can measure overlap.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::Value;

use crate::address::Address;
use crate::resource::{Attrs, DesiredResource, ReadRequest, ResourceError, ResourceKind};

/// When one step ran.
#[derive(Debug, Clone)]
pub struct StepSpan {
    pub address: Address,
    pub op: &'static str,
    pub start: Duration,
    pub end: Duration,
}

/// Files as resources: attribute `path` (forces replacement), `content`, and `secret`
/// (sensitive, written to `<path>.secret`).
pub struct FileKind {
    root: PathBuf,
    delay: Duration,
    fail: Mutex<BTreeSet<String>>,
    epoch: Instant,
    spans: Arc<Mutex<Vec<StepSpan>>>,
}

impl FileKind {
    pub fn new(root: impl Into<PathBuf>) -> FileKind {
        FileKind {
            root: root.into(),
            delay: Duration::ZERO,
            fail: Mutex::new(BTreeSet::new()),
            epoch: Instant::now(),
            spans: Default::default(),
        }
    }

    /// Every create, update and delete sleeps this long first.
    pub fn with_delay(mut self, delay: Duration) -> FileKind {
        self.delay = delay;
        self
    }

    /// Changes to this relative path fail.
    pub fn fail_on(&self, path: &str) {
        self.fail.lock().unwrap().insert(path.to_string());
    }

    /// The recorded step spans.
    pub fn spans(&self) -> Vec<StepSpan> {
        self.spans.lock().unwrap().clone()
    }

    /// A desired file resource `file["<path>"]`.
    pub fn desired(path: &str, content: &str) -> DesiredResource {
        let attrs = Attrs::from([
            ("path".to_string(), Value::String(path.into())),
            ("content".to_string(), Value::String(content.into())),
        ]);
        DesiredResource::new(Address::keyed("file", path), "file", attrs)
    }

    fn path_of(attrs: &Attrs) -> Result<String, ResourceError> {
        attrs
            .get("path")
            .and_then(Value::as_str)
            .map(String::from)
            .ok_or_else(|| ResourceError::new("a file resource needs `path`"))
    }

    async fn step(
        &self,
        address: &Address,
        op: &'static str,
        path: &str,
    ) -> Result<Instant, ResourceError> {
        let start = Instant::now();
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        if self.fail.lock().unwrap().contains(path) {
            self.record(address, op, start);
            return Err(ResourceError::new(format!(
                "{op} of {path} failed (as the test asked)"
            )));
        }
        Ok(start)
    }

    fn record(&self, address: &Address, op: &'static str, start: Instant) {
        self.spans.lock().unwrap().push(StepSpan {
            address: address.clone(),
            op,
            start: start - self.epoch,
            end: self.epoch.elapsed(),
        });
    }

    async fn write(
        &self,
        address: &Address,
        op: &'static str,
        desired: &Attrs,
    ) -> Result<Attrs, ResourceError> {
        let path = Self::path_of(desired)?;
        let start = self.step(address, op, &path).await?;
        let full = self.root.join(&path);
        if let Some(parent) = full.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| ResourceError::new(e.to_string()))?;
        }
        let content = desired
            .get("content")
            .and_then(Value::as_str)
            .unwrap_or_default();
        tokio::fs::write(&full, content)
            .await
            .map_err(|e| ResourceError::new(format!("{}: {e}", full.display())))?;
        if let Some(secret) = desired.get("secret").and_then(Value::as_str) {
            tokio::fs::write(self.root.join(format!("{path}.secret")), secret)
                .await
                .map_err(|e| ResourceError::new(e.to_string()))?;
        }
        self.record(address, op, start);
        Ok(desired.clone())
    }
}

#[async_trait]
impl ResourceKind for FileKind {
    fn name(&self) -> &'static str {
        "file"
    }

    fn force_new(&self) -> &'static [&'static str] {
        &["path"]
    }

    fn sensitive(&self) -> &'static [&'static str] {
        &["secret"]
    }

    async fn read(&self, req: ReadRequest<'_>) -> Result<Option<Attrs>, ResourceError> {
        // The live file is where it was last applied, whatever the spec now says.
        let path = match req.prior.or(req.desired) {
            Some(a) => Self::path_of(a)?,
            None => return Ok(None),
        };
        let full = self.root.join(&path);
        match tokio::fs::read_to_string(&full).await {
            Ok(content) => {
                let mut attrs = Attrs::from([
                    ("path".to_string(), Value::String(path.clone())),
                    ("content".to_string(), Value::String(content)),
                ]);
                if let Ok(secret) =
                    tokio::fs::read_to_string(self.root.join(format!("{path}.secret"))).await
                {
                    attrs.insert("secret".into(), Value::String(secret));
                }
                Ok(Some(attrs))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ResourceError::new(format!("{}: {e}", full.display()))),
        }
    }

    async fn create(&self, address: &Address, desired: &Attrs) -> Result<Attrs, ResourceError> {
        self.write(address, "create", desired).await
    }

    async fn update(
        &self,
        address: &Address,
        _prior: &Attrs,
        desired: &Attrs,
    ) -> Result<Attrs, ResourceError> {
        self.write(address, "update", desired).await
    }

    async fn delete(&self, address: &Address, prior: &Attrs) -> Result<(), ResourceError> {
        let path = Self::path_of(prior)?;
        let start = self.step(address, "delete", &path).await?;
        for p in [
            self.root.join(&path),
            self.root.join(format!("{path}.secret")),
        ] {
            match tokio::fs::remove_file(&p).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(ResourceError::new(format!("{}: {e}", p.display()))),
            }
        }
        self.record(address, "delete", start);
        Ok(())
    }
}
