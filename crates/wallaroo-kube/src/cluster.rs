//! One connection to the cluster for one operation, and the reads its steps share.
//!
//! A plan asks the API server the same questions several times: preflight counts the nodes
//! each nodepool selector matches, the shared-node check looks at the same nodes, and the
//! nodepools' refresh reads them once more; discovery and preflight both ask for the server's
//! version. Behind a slow link every extra connection costs a TLS handshake and every extra
//! question a round trip (and a LIST of a thousand nodes is the largest answer a plan gets), so
//! a [`Cluster`] keeps one client, and one made with [`Cluster::sharing_reads`] answers each of
//! these questions once until [`Cluster::forget_reads`] is called at the start of the next
//! operation. A plain one (from a client) asks every time.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::version::Info;
use kube::Api;
use tokio::sync::OnceCell;

use crate::KubeError;

type Shared<T> = Arc<OnceCell<Arc<T>>>;

/// A client and the reads one operation shares. Cheap to clone (clones share everything).
#[derive(Clone)]
pub struct Cluster {
    client: kube::Client,
    /// Whether answers are kept (see [`Cluster::sharing_reads`]).
    sharing: bool,
    reads: Arc<Mutex<Reads>>,
}

#[derive(Default)]
struct Reads {
    version: Shared<Info>,
    nodes: HashMap<String, Shared<Vec<Node>>>,
}

impl Cluster {
    /// The cluster of the current kubeconfig (`KUBECONFIG`, or in-cluster).
    pub async fn connect() -> Result<Cluster, KubeError> {
        Ok(Cluster::from(crate::connect().await?))
    }

    /// [`Cluster::connect`], trying requests again for up to `retry` while the API server
    /// cannot answer (see [`crate::retry`]).
    pub async fn connect_retrying(retry: std::time::Duration) -> Result<Cluster, KubeError> {
        Ok(Cluster::from(crate::connect_retrying(retry).await?))
    }

    /// The same cluster, keeping each answer for the steps of one operation: whoever holds
    /// it calls [`Cluster::forget_reads`] when the next operation starts, so that nothing
    /// read before an apply is taken for the state after it.
    pub fn sharing_reads(mut self) -> Cluster {
        self.sharing = true;
        self
    }

    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// Forgets every answer kept so far: the next question goes to the API server again.
    pub fn forget_reads(&self) {
        *self.reads.lock().expect("reads lock") = Reads::default();
    }

    /// The API server's version, asked once.
    pub async fn version(&self) -> Result<Arc<Info>, kube::Error> {
        if !self.sharing {
            return self.client.apiserver_version().await.map(Arc::new);
        }
        let cell = self.reads.lock().expect("reads lock").version.clone();
        cell.get_or_try_init(|| async { self.client.apiserver_version().await.map(Arc::new) })
            .await
            .cloned()
    }

    /// The nodes a label selector (`k=v,k2=v2`) matches, listed once; concurrent callers
    /// wait for the same LIST. A failed LIST is not kept.
    pub async fn nodes_matching(&self, selector: &str) -> Result<Arc<Vec<Node>>, kube::Error> {
        let list = || async {
            let api: Api<Node> = Api::all(self.client.clone());
            api.list(&kube::api::ListParams::default().labels(selector))
                .await
                .map(|l| Arc::new(l.items))
        };
        if !self.sharing {
            return list().await;
        }
        let cell = self
            .reads
            .lock()
            .expect("reads lock")
            .nodes
            .entry(selector.to_string())
            .or_default()
            .clone();
        cell.get_or_try_init(list).await.cloned()
    }
}

impl From<kube::Client> for Cluster {
    fn from(client: kube::Client) -> Cluster {
        Cluster {
            client,
            sharing: false,
            reads: Arc::default(),
        }
    }
}

/// `k=v,k2=v2` for a selector map (keys in order).
pub fn selector_text(selector: &BTreeMap<String, String>) -> String {
    selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}
