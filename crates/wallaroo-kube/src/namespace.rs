//! `namespace.NAME`.

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim};
use kube::api::Api;
use serde_json::json;
use wallaroo_engine::{Address, Attrs, ReadRequest, ResourceError, ResourceKind};

use crate::{apply, delete_if_present, is_not_found, kube_err, str_attr};

pub struct NamespaceKind {
    pub client: kube::Client,
    /// Delete the namespace even when it holds PersistentVolumeClaims.
    pub delete_data: bool,
}

#[async_trait]
impl ResourceKind for NamespaceKind {
    fn name(&self) -> &'static str {
        "namespace"
    }

    fn force_new(&self) -> &'static [&'static str] {
        &["name"]
    }

    async fn read(&self, req: ReadRequest<'_>) -> Result<Option<Attrs>, ResourceError> {
        let Some(attrs) = req.prior.or(req.desired) else {
            return Ok(None);
        };
        let name = str_attr(attrs, "name")?;
        let api: Api<Namespace> = Api::all(self.client.clone());
        match api.get(name).await {
            // A namespace being deleted is as good as gone.
            Ok(ns) if ns.metadata.deletion_timestamp.is_some() => Ok(None),
            Ok(_) => Ok(Some(Attrs::from([("name".to_string(), json!(name))]))),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(kube_err(format!("reading namespace {name}"))(e)),
        }
    }

    async fn create(&self, _: &Address, desired: &Attrs) -> Result<Attrs, ResourceError> {
        let name = str_attr(desired, "name")?;
        let api: Api<Namespace> = Api::all(self.client.clone());
        let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        apply(&api, name, &body, format!("namespace {name}")).await?;
        Ok(desired.clone())
    }

    async fn rehearse(
        &self,
        address: &Address,
        _: Option<&Attrs>,
        desired: &Attrs,
    ) -> Result<Option<wallaroo_engine::Rehearsal>, ResourceError> {
        let name = str_attr(desired, "name")?;
        let api: Api<Namespace> = Api::all(self.client.clone());
        let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        let result = crate::dry_run_apply(&api, name, &body).await;
        crate::rehearse::own::answered(address, &format!("Namespace {name}"), None, result)
    }

    async fn delete(&self, _: &Address, prior: &Attrs) -> Result<(), ResourceError> {
        let name = str_attr(prior, "name")?;
        // Deleting the namespace deletes its PersistentVolumeClaims, and with them the data
        // of Wallaroo's persistent services: keep it unless asked.
        if !self.delete_data {
            let claims: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), name);
            let held = claims
                .list(&Default::default())
                .await
                .map_err(kube_err(format!("listing claims in {name}")))?;
            if !held.items.is_empty() {
                return Ok(());
            }
        }
        let api: Api<Namespace> = Api::all(self.client.clone());
        delete_if_present(&api, name, format!("namespace {name}")).await
    }
}
