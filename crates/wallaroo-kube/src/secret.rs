//! `secret.NAMESPACE/NAME`: data is sensitive; only its salted hash reaches the lockfile.

use std::collections::BTreeMap;

use async_trait::async_trait;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use serde_json::{Value, json};
use wallaroo_engine::{Address, Attrs, ReadRequest, ResourceError, ResourceKind};

use crate::{apply, delete_if_present, is_not_found, kube_err, str_attr};

pub struct SecretKind {
    pub client: kube::Client,
}

#[async_trait]
impl ResourceKind for SecretKind {
    fn name(&self) -> &'static str {
        "secret"
    }

    fn force_new(&self) -> &'static [&'static str] {
        &["namespace", "name", "type"]
    }

    fn sensitive(&self) -> &'static [&'static str] {
        &["data"]
    }

    async fn read(&self, req: ReadRequest<'_>) -> Result<Option<Attrs>, ResourceError> {
        let Some(attrs) = req.prior.or(req.desired) else {
            return Ok(None);
        };
        let (ns, name) = (str_attr(attrs, "namespace")?, str_attr(attrs, "name")?);
        let api: Api<Secret> = Api::namespaced(self.client.clone(), ns);
        let secret = match api.get(name).await {
            Ok(s) => s,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(kube_err(format!("reading secret {ns}/{name}"))(e)),
        };
        let wanted = req.desired.and_then(|d| d.get("data"));
        let data: BTreeMap<String, Value> = secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| {
                let live = String::from_utf8_lossy(&v.0).into_owned();
                let want = wanted.and_then(|w| w.get(&k)).and_then(Value::as_str);
                (k, Value::String(same_json(live, want)))
            })
            .collect();
        Ok(Some(Attrs::from([
            ("namespace".to_string(), json!(ns)),
            ("name".to_string(), json!(name)),
            (
                "type".to_string(),
                json!(secret.type_.unwrap_or_else(|| "Opaque".into())),
            ),
            ("data".to_string(), json!(data)),
        ])))
    }

    async fn create(&self, _: &Address, desired: &Attrs) -> Result<Attrs, ResourceError> {
        let (ns, name, body) = body(desired)?;
        let api: Api<Secret> = Api::namespaced(self.client.clone(), ns);
        apply(&api, name, &body, format!("secret {ns}/{name}")).await?;
        Ok(desired.clone())
    }

    async fn rehearse(
        &self,
        address: &Address,
        _: Option<&Attrs>,
        desired: &Attrs,
    ) -> Result<Option<wallaroo_engine::Rehearsal>, ResourceError> {
        let (ns, name, body) = body(desired)?;
        let api: Api<Secret> = Api::namespaced(self.client.clone(), ns);
        let result = crate::dry_run_apply(&api, name, &body).await;
        crate::rehearse::own::answered(address, &format!("Secret {ns}/{name}"), Some(ns), result)
    }

    async fn delete(&self, _: &Address, prior: &Attrs) -> Result<(), ResourceError> {
        let (ns, name) = (str_attr(prior, "namespace")?, str_attr(prior, "name")?);
        let api: Api<Secret> = Api::namespaced(self.client.clone(), ns);
        delete_if_present(&api, name, format!("secret {ns}/{name}")).await
    }
}

/// The Secret wallaroo applies for `desired`: namespace, name, body.
fn body(desired: &Attrs) -> Result<(&str, &str, Value), ResourceError> {
    let (ns, name) = (str_attr(desired, "namespace")?, str_attr(desired, "name")?);
    let data: BTreeMap<String, ByteString> = desired
        .get("data")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        ByteString(v.as_str().unwrap_or_default().as_bytes().to_vec()),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let body = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": ns, "labels": {"app.kubernetes.io/managed-by": "wallaroo"}},
        "type": desired.get("type").cloned().unwrap_or(json!("Opaque")),
        "data": data,
    });
    Ok((ns, name, body))
}

/// `live`, or `want` when the two are the same JSON document written differently (a
/// `.dockerconfigjson` made by `kubectl create secret docker-registry` orders its keys
/// as Go does, wallaroo's as serde does): the same content is no change.
fn same_json(live: String, want: Option<&str>) -> String {
    let Some(want) = want else {
        return live;
    };
    if live == want {
        return live;
    }
    match (
        serde_json::from_str::<Value>(&live),
        serde_json::from_str::<Value>(want),
    ) {
        (Ok(a), Ok(b)) if a.is_object() && a == b => want.to_string(),
        _ => live,
    }
}

#[cfg(test)]
mod json_tests {
    use super::same_json;

    #[test]
    fn the_same_json_in_another_key_order_is_the_same_data() {
        let kubectl = r#"{"auths":{"r:5000":{"username":"u","password":"p","auth":"dTpw"}}}"#;
        let ours = r#"{"auths":{"r:5000":{"auth":"dTpw","password":"p","username":"u"}}}"#;
        assert_eq!(same_json(kubectl.into(), Some(ours)), ours);
        let other = r#"{"auths":{"r:5000":{"username":"u","password":"q","auth":"dTpx"}}}"#;
        assert_eq!(same_json(other.into(), Some(ours)), other);
        assert_eq!(same_json("plain".into(), Some("other")), "plain");
    }
}
