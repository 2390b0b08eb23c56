//! `state { backend = "kubernetes" }`: the lockfile kept in the cluster for a team, the way
//! Terraform's kubernetes backend keeps its state. The lockfile is a Secret
//! (`wallaroo-state-SUFFIX`, gzipped JSON under `lockfile`), and the run lock a
//! `coordination.k8s.io` Lease (`wallaroo-state-SUFFIX-lock`) whose holder renews it while it
//! runs. A holder that dies stops renewing: once `leaseDurationSeconds` pass without renewal,
//! the next run takes the Lease over.
//!
//! The state crate's [`Backend`] is synchronous (the lockfile writer runs on a thread of its
//! own), so this backend keeps its own small runtime on a thread and its client there.

use std::io::{Read, Write};
use std::sync::mpsc;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use wallaroo_state::{Backend, LockInfo, StateError};

/// Where the state lives in the cluster.
#[derive(Debug, Clone)]
pub struct KubernetesBackendConfig {
    pub namespace: String,
    pub secret_suffix: String,
    /// How long a Lease stays valid without renewal (renewed every third of it).
    pub lease_duration: Duration,
}

enum Request {
    Read(mpsc::Sender<Result<Option<Vec<u8>>, String>>),
    Write(Vec<u8>, mpsc::Sender<Result<(), String>>),
    Lock(
        LockInfo,
        Duration,
        mpsc::Sender<Result<Result<(), LockInfo>, String>>,
    ),
    Unlock(mpsc::Sender<()>),
    ForceUnlock(mpsc::Sender<Result<Option<LockInfo>, String>>),
}

/// The backend: requests go to a thread that owns a runtime and a kube client.
pub struct KubernetesBackend {
    config: KubernetesBackendConfig,
    tx: mpsc::Sender<Request>,
}

impl std::fmt::Debug for KubernetesBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesBackend")
            .field("config", &self.config)
            .finish()
    }
}

impl KubernetesBackend {
    /// Connects with the current kubeconfig (as the rest of wallaroo does).
    pub fn connect(config: KubernetesBackendConfig) -> Result<KubernetesBackend, StateError> {
        let (tx, rx) = mpsc::channel::<Request>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let cfg = config.clone();
        std::thread::Builder::new()
            .name("wallaroo-state".into())
            .spawn(move || serve(cfg, rx, ready_tx))
            .map_err(|e| StateError::Backend {
                location: location(&config),
                message: e.to_string(),
            })?;
        ready_rx
            .recv()
            .map_err(|e| e.to_string())
            .and_then(|r| r)
            .map_err(|message| StateError::Backend {
                location: location(&config),
                message,
            })?;
        Ok(KubernetesBackend { config, tx })
    }

    fn err(&self, message: impl std::fmt::Display) -> StateError {
        StateError::Backend {
            location: self.location(),
            message: message.to_string(),
        }
    }

    fn ask<T>(&self, make: impl FnOnce(mpsc::Sender<T>) -> Request) -> Result<T, StateError> {
        let (tx, rx) = mpsc::channel();
        self.tx
            .send(make(tx))
            .map_err(|_| self.err("the state thread stopped"))?;
        rx.recv().map_err(|_| self.err("the state thread stopped"))
    }
}

fn location(c: &KubernetesBackendConfig) -> String {
    format!("secret {}/{}", c.namespace, secret_name(c))
}

fn secret_name(c: &KubernetesBackendConfig) -> String {
    format!("wallaroo-state-{}", c.secret_suffix)
}

fn lease_name(c: &KubernetesBackendConfig) -> String {
    format!("wallaroo-state-{}-lock", c.secret_suffix)
}

/// The guard of a held Lease: dropping it releases the Lease.
struct LeaseGuard {
    tx: mpsc::Sender<Request>,
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        let (tx, rx) = mpsc::channel();
        if self.tx.send(Request::Unlock(tx)).is_ok() {
            let _ = rx.recv_timeout(Duration::from_secs(10));
        }
    }
}

impl Backend for KubernetesBackend {
    fn location(&self) -> String {
        location(&self.config)
    }

    fn read(&self) -> Result<Option<Vec<u8>>, StateError> {
        self.ask(Request::Read)?.map_err(|m| self.err(m))
    }

    fn write(&self, bytes: &[u8]) -> Result<(), StateError> {
        let bytes = bytes.to_vec();
        self.ask(|tx| Request::Write(bytes, tx))?
            .map_err(|m| self.err(m))
    }

    fn lock(&self, holder: &LockInfo, timeout: Duration) -> Result<Box<dyn Send>, StateError> {
        let holder = holder.clone();
        match self
            .ask(|tx| Request::Lock(holder, timeout, tx))?
            .map_err(|m| self.err(m))?
        {
            Ok(()) => Ok(Box::new(LeaseGuard {
                tx: self.tx.clone(),
            })),
            Err(holder) => Err(StateError::Locked {
                path: self.location().into(),
                holder,
            }),
        }
    }

    fn force_unlock(&self) -> Result<Option<LockInfo>, StateError> {
        self.ask(Request::ForceUnlock)?.map_err(|m| self.err(m))
    }
}

fn serve(
    config: KubernetesBackendConfig,
    rx: mpsc::Receiver<Request>,
    ready: mpsc::Sender<Result<(), String>>,
) {
    // One worker thread: the Lease renewal runs there between requests.
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            return;
        }
    };
    let client = match rt.block_on(kube::Client::try_default()) {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(format!("cannot reach the cluster: {e}")));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &config.namespace);
    let leases: Api<Lease> = Api::namespaced(client, &config.namespace);
    let mut renewal: Option<tokio::task::JoinHandle<()>> = None;
    while let Ok(req) = rx.recv() {
        match req {
            Request::Read(reply) => {
                let _ = reply.send(rt.block_on(read(&secrets, &config)));
            }
            Request::Write(bytes, reply) => {
                let _ = reply.send(rt.block_on(write(&secrets, &config, &bytes)));
            }
            Request::Lock(holder, timeout, reply) => {
                let got = rt.block_on(acquire(&leases, &config, &holder, timeout));
                if matches!(got, Ok(Ok(()))) {
                    let (leases, config) = (leases.clone(), config.clone());
                    renewal = Some(rt.spawn(async move {
                        loop {
                            tokio::time::sleep(config.lease_duration / 3).await;
                            let _ = renew(&leases, &config).await;
                        }
                    }));
                }
                let _ = reply.send(got);
            }
            Request::Unlock(reply) => {
                if let Some(r) = renewal.take() {
                    r.abort();
                }
                let _ = rt.block_on(release(&leases, &config));
                let _ = reply.send(());
            }
            Request::ForceUnlock(reply) => {
                let _ = reply.send(rt.block_on(force_unlock(&leases, &config)));
            }
        }
    }
}

fn kerr(e: kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} ({})", s.message, s.code),
        other => other.to_string(),
    }
}

fn is_code(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

async fn read(api: &Api<Secret>, c: &KubernetesBackendConfig) -> Result<Option<Vec<u8>>, String> {
    let secret = match api.get_opt(&secret_name(c)).await.map_err(kerr)? {
        Some(s) => s,
        None => return Ok(None),
    };
    let Some(gz) = secret.data.and_then(|d| d.get("lockfile").cloned()) else {
        return Ok(None);
    };
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(gz.0.as_slice())
        .read_to_end(&mut out)
        .map_err(|e| format!("the stored lockfile is not gzip: {e}"))?;
    Ok(Some(out))
}

async fn write(api: &Api<Secret>, c: &KubernetesBackendConfig, bytes: &[u8]) -> Result<(), String> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes).map_err(|e| e.to_string())?;
    let gz = gz.finish().map_err(|e| e.to_string())?;
    let name = secret_name(c);
    let mut secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(c.namespace.clone()),
            labels: Some(
                [(
                    "app.kubernetes.io/managed-by".to_string(),
                    "wallaroo".to_string(),
                )]
                .into(),
            ),
            ..Default::default()
        },
        type_: Some("wallaroo.ai/state".into()),
        data: Some([("lockfile".to_string(), ByteString(gz))].into()),
        ..Default::default()
    };
    match api.get_opt(&name).await.map_err(kerr)? {
        Some(existing) => {
            // Replace with the version read: a concurrent writer (which the Lease should
            // prevent) makes this fail instead of losing its write.
            secret.metadata.resource_version = existing.metadata.resource_version;
            api.replace(&name, &PostParams::default(), &secret)
                .await
                .map_err(kerr)?;
        }
        None => {
            api.create(&PostParams::default(), &secret)
                .await
                .map_err(kerr)?;
        }
    }
    Ok(())
}

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

fn holder_of(lease: &Lease) -> Option<LockInfo> {
    let id = lease.spec.as_ref()?.holder_identity.as_ref()?;
    serde_json::from_str(id).ok()
}

/// Whether the Lease has lapsed: no holder, or not renewed within its duration.
fn expired(lease: &Lease) -> bool {
    let Some(spec) = &lease.spec else {
        return true;
    };
    if spec.holder_identity.is_none() {
        return true;
    }
    let (Some(renewed), Some(secs)) = (&spec.renew_time, spec.lease_duration_seconds) else {
        return true;
    };
    let deadline = renewed.0 + k8s_openapi::jiff::SignedDuration::from_secs(secs as i64);
    deadline < k8s_openapi::jiff::Timestamp::now()
}

async fn acquire(
    api: &Api<Lease>,
    c: &KubernetesBackendConfig,
    holder: &LockInfo,
    timeout: Duration,
) -> Result<Result<(), LockInfo>, String> {
    let name = lease_name(c);
    let deadline = std::time::Instant::now() + timeout;
    let identity = serde_json::to_string(holder).expect("lock info serializes");
    loop {
        let spec = LeaseSpec {
            holder_identity: Some(identity.clone()),
            lease_duration_seconds: Some(c.lease_duration.as_secs().max(1) as i32),
            acquire_time: Some(now()),
            renew_time: Some(now()),
            ..Default::default()
        };
        let outcome = match api.get_opt(&name).await.map_err(kerr)? {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        namespace: Some(c.namespace.clone()),
                        ..Default::default()
                    },
                    spec: Some(spec),
                };
                match api.create(&PostParams::default(), &lease).await {
                    Ok(_) => return Ok(Ok(())),
                    Err(e) if is_code(&e, 409) => None,
                    Err(e) => return Err(kerr(e)),
                }
            }
            Some(existing) if expired(&existing) => {
                let mut lease = existing.clone();
                let transitions = existing
                    .spec
                    .as_ref()
                    .and_then(|s| s.lease_transitions)
                    .unwrap_or(0);
                lease.spec = Some(LeaseSpec {
                    lease_transitions: Some(transitions + 1),
                    ..spec
                });
                match api.replace(&name, &PostParams::default(), &lease).await {
                    Ok(_) => return Ok(Ok(())),
                    // Someone else took it first.
                    Err(e) if is_code(&e, 409) => None,
                    Err(e) => return Err(kerr(e)),
                }
            }
            Some(held) => holder_of(&held),
        };
        if std::time::Instant::now() >= deadline {
            return Ok(Err(outcome.unwrap_or_else(|| LockInfo {
                host: "?".into(),
                pid: 0,
                command: "another run".into(),
                since: 0,
            })));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn renew(api: &Api<Lease>, c: &KubernetesBackendConfig) -> Result<(), String> {
    let name = lease_name(c);
    let Some(mut lease) = api.get_opt(&name).await.map_err(kerr)? else {
        return Ok(());
    };
    if let Some(spec) = lease.spec.as_mut() {
        spec.renew_time = Some(now());
    }
    api.replace(&name, &PostParams::default(), &lease)
        .await
        .map_err(kerr)?;
    Ok(())
}

async fn release(api: &Api<Lease>, c: &KubernetesBackendConfig) -> Result<(), String> {
    let name = lease_name(c);
    let Some(mut lease) = api.get_opt(&name).await.map_err(kerr)? else {
        return Ok(());
    };
    if let Some(spec) = lease.spec.as_mut() {
        spec.holder_identity = None;
        spec.renew_time = None;
    }
    api.replace(&name, &PostParams::default(), &lease)
        .await
        .map_err(kerr)?;
    Ok(())
}

async fn force_unlock(
    api: &Api<Lease>,
    c: &KubernetesBackendConfig,
) -> Result<Option<LockInfo>, String> {
    let name = lease_name(c);
    let Some(lease) = api.get_opt(&name).await.map_err(kerr)? else {
        return Ok(None);
    };
    let holder = holder_of(&lease);
    api.delete(&name, &Default::default()).await.map_err(kerr)?;
    Ok(holder)
}
