//! The API server's rehearsal of a release: each object helm would write, sent as the write
//! helm makes for it with `dryRun=All` and `fieldValidation=Strict`, so that the whole
//! admission chain (policies, webhooks that support dry runs, quotas, LimitRanges), schema and
//! immutable-field checks answer before anything is changed, and nothing is stored.
//!
//! A new object is rehearsed as a create; one that exists and belongs to the release as a
//! merge patch of the rendered object (helm sends a three-way patch; the rendered object
//! carries every field the chart sets); a hook that exists as a create under a generated
//! name (helm deletes it before making it again). An object that exists and belongs to no
//! release or another one is refused as helm refuses it (invalid ownership metadata). A kind
//! the cluster does not serve is refused, unless the chart's own CRDs bring it (their objects
//! are then listed as not rehearsed). CRDs are rehearsed first, as helm orders them.

pub mod answer;
pub mod crds;
pub mod own;
pub mod replace;

use std::collections::{BTreeMap, BTreeSet};

use kube::discovery::{ApiCapabilities, ApiResource, Scope};
use serde_json::Value;
use wallaroo_engine::{Refusal, RefusalReason, Rehearsal};

use crate::Cluster;
use answer::{Answer, classify, refusal};

/// How many dry runs are in flight at once.
const AT_ONCE: usize = 8;

/// What to rehearse of a release.
#[derive(Debug, Clone)]
pub struct ReleaseWrites<'a> {
    /// The plan's resource (`helm_release.wallaroo`).
    pub address: &'a str,
    pub release: &'a str,
    pub namespace: &'a str,
    /// Where objects of the release's namespace are sent: the namespace itself, or a
    /// short-lived one when it does not exist yet.
    pub into: &'a str,
    /// What `helm template` rendered (hooks included).
    pub manifests: &'a str,
    /// The chart's `crds/` documents.
    pub crds: &'a [String],
    /// Whether an object whose change a field's immutability refuses may be replaced
    /// (deleted and made again) instead.
    pub replace_immutable: bool,
    /// Secret strings to scrub from the server's messages.
    pub redact: &'a [String],
}

/// An object apply deletes before helm makes it again, since a field that cannot change
/// does.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Replacement {
    /// `Deployment ns/name`.
    pub object: String,
    /// Its API path, for the delete.
    pub path: String,
    /// Keep its dependents (a StatefulSet's pods and volumes): delete with `Orphan`.
    pub orphan: bool,
    /// `spec.selector is immutable`.
    pub why: String,
}

/// What a release's rehearsal found, the replacements it would make, and the chart's CRDs
/// apply applies first.
#[derive(Debug, Clone, Default)]
pub struct ReleaseRehearsal {
    pub found: Rehearsal,
    pub replacing: Vec<Replacement>,
    pub crds: Vec<Value>,
}

/// What the release's next upgrade does first: the chart's CRDs applied, then the objects
/// replaced.
#[derive(Debug, Clone, Default)]
pub struct BeforeUpgrade {
    pub crds: Vec<Value>,
    pub replacing: Vec<Replacement>,
}

/// One object to rehearse, parsed.
struct Object {
    doc: Value,
    api_version: String,
    kind: String,
    name: String,
    namespace: Option<String>,
    hook: bool,
    /// From the chart's `crds/`: applied by wallaroo server-side, owned by no release.
    chart_crd: bool,
}

impl Object {
    fn of(doc: Value) -> Option<Object> {
        let api_version = doc["apiVersion"].as_str()?.to_string();
        let kind = doc["kind"].as_str()?.to_string();
        let name = doc["metadata"]["name"].as_str()?.to_string();
        let namespace = doc["metadata"]["namespace"].as_str().map(String::from);
        let hooks = doc["metadata"]["annotations"]["helm.sh/hook"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let hook = !hooks.is_empty();
        // Test hooks run on `helm test` only.
        if hooks.split(',').any(|h| h.trim().starts_with("test")) {
            return None;
        }
        Some(Object {
            doc,
            api_version,
            kind,
            name,
            namespace,
            hook,
            chart_crd: false,
        })
    }

    fn gv(&self) -> (String, String) {
        match self.api_version.split_once('/') {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (String::new(), self.api_version.clone()),
        }
    }
}

/// Rehearses every object of a release (see the module's documentation).
pub async fn release(
    cluster: &Cluster,
    w: &ReleaseWrites<'_>,
) -> Result<ReleaseRehearsal, kube::Error> {
    // Parsed before the first await: the YAML parser is not Send.
    let parse = |text: &str| -> Vec<Object> {
        crate::helm::manifest_documents(text)
            .filter_map(|doc| serde_saphyr::from_str::<Option<Value>>(doc).ok().flatten())
            .filter_map(Object::of)
            .collect()
    };
    let mut objects: Vec<Object> = w
        .crds
        .iter()
        .flat_map(|t| parse(t))
        .filter(|o| o.kind == "CustomResourceDefinition")
        .map(|o| Object {
            chart_crd: true,
            ..o
        })
        .collect();
    let chart_crds = objects.len();
    objects.extend(parse(w.manifests));
    // Kinds the chart's CRDs bring: group -> kinds.
    let mut brought: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for o in objects
        .iter()
        .filter(|o| o.kind == "CustomResourceDefinition")
    {
        if let (Some(group), Some(kind)) = (
            o.doc["spec"]["group"].as_str(),
            o.doc["spec"]["names"]["kind"].as_str(),
        ) {
            brought
                .entry(group.to_string())
                .or_default()
                .insert(kind.to_string());
        }
    }
    let served = discover(cluster, &objects).await?;
    let mut out = ReleaseRehearsal {
        crds: objects
            .iter()
            .filter(|o| o.chart_crd)
            .map(|o| o.doc.clone())
            .collect(),
        ..ReleaseRehearsal::default()
    };
    let describe = |o: &Object, ns: Option<&str>| match ns {
        Some(ns) => format!("{} {ns}/{}", o.kind, o.name),
        None => format!("{} {}", o.kind, o.name),
    };
    // CRDs first (helm creates them before the rest), then everything else.
    let mut order: Vec<usize> = (0..objects.len()).collect();
    order.sort_by_key(|&i| (objects[i].kind != "CustomResourceDefinition", i));
    let mut todo = Vec::new();
    for i in order {
        let o = &objects[i];
        let (group, version) = o.gv();
        let Some((ar, caps)) = served
            .get(&(group.clone(), version.clone()))
            .and_then(|kinds| kinds.get(&o.kind))
        else {
            if brought.get(&group).is_some_and(|k| k.contains(&o.kind)) {
                out.found.not_rehearsed.push(format!(
                    "{}: its kind comes with the chart's CRDs, which the cluster does not serve yet; it is checked when they are",
                    describe(o, o.namespace.as_deref().or(Some(w.namespace)))
                ));
            } else {
                let message = format!(
                    "the cluster does not serve {} in API version {}",
                    o.kind, o.api_version
                );
                out.found.refused.push(refusal(
                    w.address,
                    &describe(o, o.namespace.as_deref()),
                    None,
                    RefusalReason::Unserved,
                    None,
                    message,
                    w.redact,
                ));
            }
            continue;
        };
        todo.push((i, ar.clone(), caps.clone()));
    }
    if chart_crds > 0 {
        out.found.notes.push(format!(
            "the chart's crds/ ({chart_crds} CRD(s)) were rehearsed as apply applies them: server-side, before the release, never deleted"
        ));
    }
    // What the release makes, by name: a dry run of one object that needs another made in
    // the same install (a binding and its Role) cannot find it.
    let names: BTreeSet<String> = objects
        .iter()
        .map(|o| format!("{}\"{}\"", o.kind.to_lowercase(), o.name))
        .collect();
    let names = &names;
    let sends = todo.into_iter().map(|(i, ar, caps)| {
        let o = &objects[i];
        rehearse_object(cluster, w, o, ar, caps, names)
    });
    let answers: Vec<Result<Outcome, kube::Error>> = futures_util::StreamExt::collect(
        futures_util::StreamExt::buffered(futures_util::stream::iter(sends), AT_ONCE),
    )
    .await;
    for a in answers {
        match a? {
            Outcome::Accepted { object, warnings } => {
                out.found.rehearsed += 1;
                out.found
                    .warnings
                    .extend(warnings.into_iter().map(|w| format!("{object}: {w}")));
            }
            Outcome::Refused(r) => {
                out.found.rehearsed += 1;
                out.found.refused.push(r);
            }
            Outcome::NotRehearsed { object, why } => out
                .found
                .not_rehearsed
                .push(format!("{object}: could not be rehearsed: {why}")),
            Outcome::Replaced(r) => {
                out.found.rehearsed += 1;
                out.replacing.push(r);
            }
        }
    }
    out.replacing.sort();
    Ok(out)
}

/// The API resources of each group and version the objects use: (group, version) -> kind ->
/// resource. A group or version the server does not serve is absent.
async fn discover(
    cluster: &Cluster,
    objects: &[Object],
) -> Result<BTreeMap<(String, String), BTreeMap<String, (ApiResource, ApiCapabilities)>>, kube::Error>
{
    let gvs: BTreeSet<(String, String)> = objects.iter().map(|o| o.gv()).collect();
    let asks = gvs.into_iter().map(|(group, version)| async move {
        let gv = kube::core::GroupVersion::gv(&group, &version);
        let found = match kube::discovery::pinned_group(cluster.client(), &gv).await {
            Ok(g) => Some(
                g.versioned_resources(&version)
                    .into_iter()
                    .map(|(ar, caps)| (ar.kind.clone(), (ar, caps)))
                    .collect::<BTreeMap<_, _>>(),
            ),
            Err(kube::Error::Api(s)) if s.code == 404 => None,
            Err(e) => return Err(e),
        };
        Ok(((group, version), found))
    });
    let answers: Vec<Result<_, kube::Error>> = futures_util::StreamExt::collect(
        futures_util::StreamExt::buffer_unordered(futures_util::stream::iter(asks), AT_ONCE),
    )
    .await;
    let mut out = BTreeMap::new();
    for a in answers {
        let (gv, found) = a?;
        if let Some(kinds) = found {
            out.insert(gv, kinds);
        }
    }
    Ok(out)
}

/// How one object's rehearsal ended.
enum Outcome {
    Accepted {
        object: String,
        warnings: Vec<String>,
    },
    Refused(Refusal),
    NotRehearsed {
        object: String,
        why: String,
    },
    Replaced(Replacement),
}

/// The API path of `ar` in namespace `ns` (`None`: cluster-scoped).
fn collection_path(ar: &ApiResource, ns: Option<&str>) -> String {
    let base = if ar.group.is_empty() {
        format!("/api/{}", ar.version)
    } else {
        format!("/apis/{}/{}", ar.group, ar.version)
    };
    match ns {
        Some(ns) => format!("{base}/namespaces/{ns}/{}", ar.plural),
        None => format!("{base}/{}", ar.plural),
    }
}

const DRY_RUN: &str = "dryRun=All&fieldValidation=Strict&fieldManager=helm";

async fn rehearse_object(
    cluster: &Cluster,
    w: &ReleaseWrites<'_>,
    o: &Object,
    ar: ApiResource,
    caps: ApiCapabilities,
    release_objects: &BTreeSet<String>,
) -> Result<Outcome, kube::Error> {
    let namespaced = caps.scope == Scope::Namespaced;
    let ns = namespaced.then(|| {
        o.namespace
            .clone()
            .unwrap_or_else(|| w.namespace.to_string())
    });
    let object = match &ns {
        Some(ns) => format!("{} {ns}/{}", o.kind, o.name),
        None => format!("{} {}", o.kind, o.name),
    };
    // The release's namespace may be a short-lived stand-in on a first install.
    let send_ns = ns
        .as_deref()
        .map(|n| if n == w.namespace { w.into } else { n });
    let collection = collection_path(&ar, send_ns);
    let mut body = o.doc.clone();
    if let Some(n) = send_ns {
        body["metadata"]["namespace"] = Value::String(n.to_string());
    }
    let (status, _, live) = send(
        cluster.client(),
        http::Method::GET,
        &format!("{collection}/{}", o.name),
        None,
    )
    .await?;
    let live: Option<Value> = match status {
        200 => serde_json::from_slice(&live).ok(),
        404 => None,
        _ => {
            return Ok(Outcome::NotRehearsed {
                object,
                why: format!("reading it answered {status}: {}", body_text(&live)),
            });
        }
    };
    if o.chart_crd {
        // Applied server-side by wallaroo, as apply will; a version objects are stored in
        // must stay.
        if let Some(live) = &live {
            let dropped = crds::dropped_versions(live, &o.doc);
            if !dropped.is_empty() {
                return Ok(Outcome::Refused(Refusal {
                    address: w.address.to_string(),
                    object,
                    reason: RefusalReason::Invalid,
                    field: Some("spec.versions".into()),
                    message: format!(
                        "the chart's CRD no longer lists version(s) {}, which objects are stored in (status.storedVersions)",
                        dropped.join(", ")
                    ),
                    hint: "migrate the stored objects to a version the new CRD keeps, and drop the old one from status.storedVersions, before this upgrade (Kubernetes' storage version migration)".into(),
                }));
            }
        }
        let (status, headers, answer) = send(
            cluster.client(),
            http::Method::PATCH,
            &format!(
                "{collection}/{}?dryRun=All&fieldValidation=Strict&fieldManager={}&force=true",
                o.name,
                crds::MANAGER
            ),
            Some(("application/apply-patch+yaml", payload_of(&body))),
        )
        .await?;
        return Ok(match classify(status, &headers, &answer) {
            Answer::Accepted(warnings) => Outcome::Accepted { object, warnings },
            Answer::NotRehearsed(why) => Outcome::NotRehearsed { object, why },
            Answer::Refused {
                reason,
                field,
                message,
            } => Outcome::Refused(refusal(
                w.address, &object, None, reason, field, message, w.redact,
            )),
        });
    }
    let (method, path, content_type) = match &live {
        None => (http::Method::POST, collection.clone(), "application/json"),
        Some(_) if o.hook => {
            // helm deletes a hook before making it again: a create under another name.
            body["metadata"].as_object_mut().map(|m| m.remove("name"));
            body["metadata"]["generateName"] = Value::String(format!("{}-", o.name));
            (http::Method::POST, collection.clone(), "application/json")
        }
        Some(live) => {
            if let Some(why) = not_owned(live, w.release, ns.as_deref().unwrap_or(w.namespace)) {
                return Ok(Outcome::Refused(Refusal {
                    address: w.address.to_string(),
                    object: object.clone(),
                    reason: RefusalReason::Ownership,
                    field: None,
                    message: why,
                    hint: ownership_hint(o, ns.as_deref(), w.release, w.namespace),
                }));
            }
            (
                http::Method::PATCH,
                format!("{collection}/{}", o.name),
                "application/merge-patch+json",
            )
        }
    };
    let payload = payload_of(&body);
    let (status, headers, answer) = send(
        cluster.client(),
        method.clone(),
        &format!("{path}?{DRY_RUN}"),
        Some((content_type, payload)),
    )
    .await?;
    // A binding's role is resolved when the binding is made (RBAC's escalation check): one
    // the same install makes cannot be found by a dry run.
    let bound_role = matches!(o.kind.as_str(), "RoleBinding" | "ClusterRoleBinding")
        .then(|| {
            let kind = o.doc["roleRef"]["kind"].as_str().unwrap_or_default();
            let name = o.doc["roleRef"]["name"].as_str().unwrap_or_default();
            (
                format!("{}\"{name}\"", kind.to_lowercase()),
                format!("{} {name}", kind.to_lowercase()),
            )
        })
        .filter(|(key, _)| release_objects.contains(key))
        .map(|(_, shown)| shown);
    if status == 404
        && let Some(needed) = bound_role.or_else(|| needs_from_release(&answer, release_objects))
    {
        return Ok(Outcome::NotRehearsed {
            object,
            why: format!(
                "it needs {needed}, which this install makes and which does not exist yet (the permission check covers what making it takes)"
            ),
        });
    }
    Ok(match classify(status, &headers, &answer) {
        Answer::Accepted(warnings) => Outcome::Accepted { object, warnings },
        Answer::NotRehearsed(why) => Outcome::NotRehearsed {
            object,
            why: answer::scrub(why, w.redact),
        },
        Answer::Refused {
            reason: RefusalReason::Immutable,
            field,
            message,
        } if w.replace_immutable && method == http::Method::PATCH => {
            let why = if message.contains("updates to statefulset spec") {
                "only replicas, ordinals, template, updateStrategy, persistentVolumeClaimRetentionPolicy and minReadySeconds of a StatefulSet may change".to_string()
            } else {
                match &field {
                    Some(f) => format!("{f} is immutable"),
                    None => "a field that cannot change does".to_string(),
                }
            };
            Outcome::Replaced(Replacement {
                object,
                path: format!("{collection}/{}", o.name),
                orphan: o.kind == "StatefulSet",
                why,
            })
        }
        Answer::Refused {
            reason,
            field,
            message,
        } => Outcome::Refused(refusal(
            w.address,
            &object,
            ns.as_deref(),
            reason,
            field,
            message,
            w.redact,
        )),
    })
}

/// The object of the release a NotFound answer names (`roles.rbac.authorization.k8s.io
/// "reader" not found`), when it names one: `role "reader"`.
fn needs_from_release(answer: &[u8], release_objects: &BTreeSet<String>) -> Option<String> {
    let message = serde_json::from_slice::<Value>(answer).ok()?["message"]
        .as_str()?
        .to_string();
    let (resource, rest) = message.split_once(' ')?;
    let name = rest.strip_suffix(" not found")?;
    // `roles.rbac.authorization.k8s.io` -> `role`; `ingresses` -> `ingress`
    let plural = resource.split('.').next()?;
    [plural.strip_suffix("es"), plural.strip_suffix('s')]
        .into_iter()
        .flatten()
        .find(|kind| release_objects.contains(&format!("{kind}{name}")))
        .map(|kind| format!("{kind} {name}"))
}

fn payload_of(body: &Value) -> Vec<u8> {
    serde_json::to_vec(body).unwrap_or_default()
}

/// Why helm would not take over `live` for release `release` in `namespace` (its ownership
/// metadata), or `None` when it would.
fn not_owned(live: &Value, release: &str, namespace: &str) -> Option<String> {
    let meta = &live["metadata"];
    let managed = meta["labels"]["app.kubernetes.io/managed-by"].as_str();
    let name = meta["annotations"]["meta.helm.sh/release-name"].as_str();
    let ns = meta["annotations"]["meta.helm.sh/release-namespace"].as_str();
    if managed == Some("Helm") && name == Some(release) && ns == Some(namespace) {
        return None;
    }
    Some(match (name, ns) {
        (Some(n), Some(s)) if (n, s) != (release, namespace) => format!(
            "it exists and belongs to helm release {s}/{n}: helm refuses to take it over (invalid ownership metadata)"
        ),
        _ => "it exists and was not made by helm: helm refuses to take it over (invalid ownership metadata)".to_string(),
    })
}

/// What to do about an object helm will not take over: delete it, or mark it as the
/// release's (the exact labels and annotations helm checks).
fn ownership_hint(o: &Object, ns: Option<&str>, release: &str, release_ns: &str) -> String {
    let ns_flag = ns.map(|n| format!(" -n {n}")).unwrap_or_default();
    let what = format!("{} {}{ns_flag}", o.kind.to_lowercase(), o.name);
    format!(
        "delete it if nothing else uses it, or let the release adopt it: `kubectl label {what} app.kubernetes.io/managed-by=Helm --overwrite && kubectl annotate {what} meta.helm.sh/release-name={release} meta.helm.sh/release-namespace={release_ns} --overwrite`"
    )
}

/// Reads `path` every 250 ms until `done` holds for its status and body (`Ok(true)`), or
/// `timeout` passes (`Ok(false)`).
pub async fn wait_for(
    client: &kube::Client,
    path: &str,
    timeout: std::time::Duration,
    done: impl Fn(u16, &Value) -> bool,
) -> Result<bool, kube::Error> {
    let start = std::time::Instant::now();
    loop {
        let (status, _, body) = send(client, http::Method::GET, path, None).await?;
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if done(status, &body) {
            return Ok(true);
        }
        if start.elapsed() > timeout {
            return Ok(false);
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

/// The start of an answer's body, for an error message.
pub fn body_text(body: &[u8]) -> String {
    String::from_utf8_lossy(body).chars().take(300).collect()
}

/// Sends one request as the cluster's identity and returns status, headers and body, the
/// status whatever it is (a refusal is an answer here, not an error).
pub async fn send(
    client: &kube::Client,
    method: http::Method,
    path: &str,
    body: Option<(&str, Vec<u8>)>,
) -> Result<(u16, http::HeaderMap, Vec<u8>), kube::Error> {
    let mut req = http::Request::builder().method(method).uri(path);
    let bytes = match body {
        Some((content_type, bytes)) => {
            req = req.header(http::header::CONTENT_TYPE, content_type);
            bytes
        }
        None => Vec::new(),
    };
    let req = req
        .body(kube::client::Body::from(bytes))
        .map_err(|e| kube::Error::BuildRequest(kube::core::request::Error::BuildRequest(e)))?;
    let res = client.send(req).await?;
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res.into_body().collect_bytes().await?.to_vec();
    Ok((status, headers, body))
}

/// Makes a short-lived namespace to rehearse a first install in (the release's own does not
/// exist yet, and the API server refuses writes into a namespace that does not exist), with
/// the labels the release's namespace will carry. Returns its name; [`drop_namespace`]
/// deletes it.
pub async fn scratch_namespace(
    cluster: &Cluster,
    for_namespace: &str,
    labels: &BTreeMap<String, String>,
) -> Result<String, kube::Error> {
    use k8s_openapi::api::core::v1::Namespace;
    let api: kube::Api<Namespace> = kube::Api::all(cluster.client().clone());
    let mut all = labels.clone();
    all.insert("app.kubernetes.io/managed-by".into(), "wallaroo".into());
    all.insert(
        "wallaroo.ai/rehearsal-for".into(),
        for_namespace.chars().take(63).collect(),
    );
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"generateName": "wallaroo-rehearsal-", "labels": all},
    }))
    .expect("a namespace");
    let made = api.create(&Default::default(), &ns).await?;
    Ok(made.metadata.name.unwrap_or_default())
}

/// Deletes a namespace [`scratch_namespace`] made (gone already is fine).
pub async fn drop_namespace(cluster: &Cluster, name: &str) -> Result<(), kube::Error> {
    use k8s_openapi::api::core::v1::Namespace;
    let api: kube::Api<Namespace> = kube::Api::all(cluster.client().clone());
    match api.delete(name, &Default::default()).await {
        Ok(_) => Ok(()),
        Err(e) if crate::is_not_found(&e) => Ok(()),
        Err(e) => Err(e),
    }
}
