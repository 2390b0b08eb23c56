//! The images a spec mirrors: the release's chart, the images its chart lists, `images {
//! extra }` and the GPU plugin; where each goes in the private registry; and the image list a
//! saved plan carries with its digest pins.

use std::collections::BTreeMap;

use serde_json::Value;
use wallaroo_engine::Plan;
use wallaroo_spec::Spec;
use wallaroo_spec::model::Method;

/// The `origin` of the chart's own entry in the image list.
pub const CHART_ORIGIN: &str = "the release's chart";

/// A digest pin: the source manifest's digest, and what the target tag holds after the copy
/// (the same, unless a platform filter leaves part of an index out).
#[derive(
    Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub struct ImagePin {
    pub source_digest: String,
    pub digest: String,
}

/// One image to mirror: its source reference, where it came from, and its pin once known.
#[derive(
    Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub struct MirrorImage {
    pub source: String,
    pub origin: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<ImagePin>,
}

/// The release's chart as an OCI reference in the source registry:
/// `{registry}/{path}/{channel}/{chart}:{version}` (`+` in the version becomes `_`, as helm
/// writes it).
pub fn chart_source(spec: &Spec) -> Option<String> {
    let source = spec.source.as_ref()?;
    Some(format!(
        "{}/{}/{}/{}:{}",
        source.registry.as_ref()?,
        source.path,
        spec.wallaroo.license_channel,
        spec.wallaroo.chart,
        spec.wallaroo.version.replace('+', "_")
    ))
}

/// `host/repo:tag` -> (`host/repo`, `tag`).
pub(crate) fn split_tag(reference: &str) -> (&str, &str) {
    let slash = reference.rfind('/').unwrap_or(0);
    match reference[slash..].rfind(':') {
        Some(i) => (&reference[..slash + i], &reference[slash + i + 1..]),
        None => (reference, "latest"),
    }
}

/// The NVIDIA device plugin's image, when the spec asks for the plugin.
pub(crate) fn gpu_plugin_image(spec: &Spec) -> String {
    format!("nvcr.io/nvidia/k8s-device-plugin:{}", spec.gpu.version)
}

/// The images a spec mirrors, unpinned: the chart, the release's images (`release`, found in
/// the chart by the caller, with their origins) unless `images { release = false }`, then
/// `images { extra }` and the GPU plugin; `images { exclude }` leaves out release images by
/// repository name or path.
pub fn image_sources(spec: &Spec, release: &BTreeMap<String, String>) -> Vec<MirrorImage> {
    let mut out: Vec<MirrorImage> = Vec::new();
    let mut push = |source: &str, origin: &str| {
        if !out.iter().any(|m| m.source == source) {
            out.push(MirrorImage {
                source: source.to_string(),
                origin: origin.to_string(),
                pin: None,
            });
        }
    };
    if spec.registry.is_some()
        && spec.wallaroo.method == Method::Helm
        && let Some(chart) = chart_source(spec)
    {
        push(&chart, CHART_ORIGIN);
    }
    let private = spec.registry.as_ref().map(|r| r.host.as_str());
    if spec.images.release {
        for (source, origin) in release {
            let (host, repo, _) = split_reference(source);
            let name = repo.rsplit('/').next().unwrap_or(&repo);
            let excluded = spec.images.exclude.iter().any(|x| x == name || *x == repo);
            // An image the chart already names in the private registry is not mirrored
            // (there is nothing to copy it from); the air-gap check wants it there.
            if !excluded && Some(host.as_str()) != private {
                push(source, origin);
            }
        }
    }
    for extra in &spec.images.extra {
        push(extra, "images.extra");
    }
    if spec.gpu.nvidia_device_plugin {
        push(&gpu_plugin_image(spec), "gpu.nvidia_device_plugin");
    }
    out
}

/// Where an image goes in the private registry: (`path`, `host/path:tag`). The chart goes
/// under `{namespace}/charts/`; images follow `images { path }`.
pub fn image_target(
    spec: &Spec,
    reg: &wallaroo_spec::model::PrivateRegistry,
    image: &MirrorImage,
) -> (String, String) {
    let (_, repo, tag) = split_reference(&image.source);
    let name = repo.rsplit('/').next().unwrap_or(&repo);
    let path = if image.origin == CHART_ORIGIN {
        format!("{}/charts/{name}", reg.namespace)
    } else {
        spec.images
            .path
            .replace("{namespace}", &reg.namespace)
            .replace("{name}", name)
            .replace("{path}", &repo)
    };
    let sep = if tag.starts_with("sha256:") { '@' } else { ':' };
    (path.clone(), format!("{}/{path}{sep}{tag}", reg.host))
}

/// An image reference split into (`host`, `path/repo`, `tag` or `sha256:...` digest):
/// `nvcr.io/nvidia/x:v1` -> (`nvcr.io`, `nvidia/x`, `v1`). The one parser of image
/// references; the OCI client uses it too. Names are normalized the way docker and containerd
/// read them: the first component is a registry host only when it has a `.` or a `:` or is
/// `localhost`, otherwise the image is Docker Hub's (`bitnami/kubectl` is
/// `docker.io/bitnami/kubectl`, `busybox` is `docker.io/library/busybox`). No tag means
/// `latest`; a tag with a digest (`x:v1@sha256:...`) is pulled by the digest, which wins.
pub fn split_reference(reference: &str) -> (String, String, String) {
    let (name_tag, digest) = match reference.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (reference, None),
    };
    let slash = name_tag.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name_tag[slash..].rfind(':') {
        Some(i) => (&name_tag[..slash + i], Some(&name_tag[slash + i + 1..])),
        None => (name_tag, None),
    };
    let reference = digest.or(tag).unwrap_or("latest").to_string();
    match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first.to_string(), rest.to_string(), reference)
        }
        Some(_) => ("docker.io".into(), name.to_string(), reference),
        None => ("docker.io".into(), format!("library/{name}"), reference),
    }
}

/// The key under which a plan carries its images (see [`plan_images`]).
const PLAN_IMAGES: &str = "images";

/// The images a plan mirrors, with their origins and pins, as [`set_plan_images`] recorded
/// them: a saved plan applies exactly these, whatever the vendor's tags say by then.
pub fn plan_images(plan: &Plan) -> Result<Vec<MirrorImage>, serde_json::Error> {
    match plan.inputs.get(PLAN_IMAGES) {
        Some(v) => serde_json::from_value(v.clone()),
        None => Ok(Vec::new()),
    }
}

/// Records the images a plan was made with (nothing when there are none, as before).
pub fn set_plan_images(plan: &mut Plan, images: &[MirrorImage]) {
    if images.is_empty() {
        plan.inputs.remove(PLAN_IMAGES);
    } else {
        plan.inputs.insert(
            PLAN_IMAGES.into(),
            serde_json::to_value(images).expect("images serialize"),
        );
    }
}

/// The JSON Schema of a wallaroo plan (`schemas/plan.schema.json`): the engine's plan with
/// the images it carries.
pub fn plan_schema() -> Value {
    let mut schema = wallaroo_engine::plan::plan_schema();
    let mut generator = schemars::SchemaGenerator::default();
    let images = generator.subschema_for::<Vec<MirrorImage>>();
    let mut images = images.to_value();
    images["description"] = Value::String(
        "The images the plan mirrors with their origins and digest pins; applying a saved plan\ncopies exactly these, whatever the vendor's tags say by then.".into(),
    );
    // Keep the properties in the order a plan prints them: images after drift.
    if let Some(props) = schema["properties"].as_object_mut() {
        let mut ordered = serde_json::Map::new();
        for (k, v) in std::mem::take(props) {
            let after_drift = k == "drift";
            ordered.insert(k, v);
            if after_drift {
                ordered.insert(PLAN_IMAGES.into(), images.clone());
                ordered.insert(
                    "vendor_preflight".into(),
                    serde_json::json!({
                        "type": "array",
                        "description": "The vendor's troubleshoot.sh preflight analyzers the release carries, each with its outcome (a failing one stops the plan, so a plan holds passes and warnings).",
                        "items": {
                            "type": "object",
                            "properties": {
                                "check": {"type": "string"},
                                "outcome": {"enum": ["pass", "warn", "fail"]},
                                "message": {"type": "string"}
                            },
                            "required": ["check", "outcome", "message"],
                            "additionalProperties": false
                        }
                    }),
                );
                ordered.insert(
                    "transfer".into(),
                    serde_json::json!({
                        "type": "object",
                        "description": "What the plan's mirroring sends at most, from the source's manifests: `bytes_at_most` counts each blob once; `images` gives each image created or changed its blobs' weight (blobs the private registry already holds are not sent, so apply may send less).",
                        "properties": {
                            "bytes_at_most": {"type": "integer", "minimum": 0},
                            "images": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}}
                        },
                        "required": ["bytes_at_most", "images"],
                        "additionalProperties": false
                    }),
                );
                ordered.insert(
                    "permissions".into(),
                    serde_json::json!({
                        "type": "object",
                        "description": "Whether the identity that applies may do everything apply needs: the spec's apply_identity (asked with SubjectAccessReview) or the identity that planned. `checked` is false when this identity may not ask about another one; `lacking` lists what it may not do (a plan whose applying identity lacks anything stops, so a saved plan's list is empty unless the planning identity only reads).",
                        "properties": {
                            "identity": {"type": "string"},
                            "checked": {"type": "boolean"},
                            "needs": {"type": "integer", "minimum": 0},
                            "lacking": {"type": "array", "items": {"type": "string"}}
                        },
                        "required": ["identity", "checked", "needs"],
                        "additionalProperties": false
                    }),
                );
                ordered.insert(
                    "rehearsal".into(),
                    serde_json::json!({
                        "type": "object",
                        "description": "The API server's rehearsal of the plan's writes (server-side dry run, as the identity that planned): how many writes were sent, each it would refuse (the plan then exits 1 and apply refuses before any change), the server's warnings, writes that could not be rehearsed and why, and notes on how it ran. `skipped` says why nothing was rehearsed (an identity that may only read).",
                        "properties": {
                            "rehearsed": {"type": "integer", "minimum": 0},
                            "refused": {"type": "array", "items": {
                                "type": "object",
                                "properties": {
                                    "address": {"type": "string"},
                                    "object": {"type": "string"},
                                    "reason": {"enum": ["immutable", "policy", "ownership", "quota", "unserved", "invalid", "forbidden", "other"]},
                                    "field": {"type": "string"},
                                    "message": {"type": "string"},
                                    "hint": {"type": "string"}
                                },
                                "required": ["address", "object", "reason", "message", "hint"],
                                "additionalProperties": false
                            }},
                            "warnings": {"type": "array", "items": {"type": "string"}},
                            "not_rehearsed": {"type": "array", "items": {"type": "string"}},
                            "notes": {"type": "array", "items": {"type": "string"}},
                            "replacing": {"type": "array", "items": {"type": "string"}, "description": "Objects of the release apply deletes and lets helm make again, since a field that cannot change does (`helm { replace_immutable = true }`)."},
                            "skipped": {"type": "string"}
                        },
                        "required": ["rehearsed"],
                        "additionalProperties": false
                    }),
                );
            }
        }
        *props = ordered;
    }
    let defs = generator.take_definitions(true);
    if let Some(all) = schema["$defs"].as_object_mut() {
        all.extend(defs);
    }
    schema
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_into_host_repository_and_tag() {
        let s = |r| split_reference(r);
        assert_eq!(
            s("nvcr.io/nvidia/x:v1"),
            ("nvcr.io".into(), "nvidia/x".into(), "v1".into())
        );
        assert_eq!(
            s("localhost:5000/a/b"),
            ("localhost:5000".into(), "a/b".into(), "latest".into())
        );
        assert_eq!(
            s("r.io/a@sha256:ab"),
            ("r.io".into(), "a".into(), "sha256:ab".into())
        );
        // A tag and a digest: the digest is what is pulled.
        assert_eq!(
            s("registry.k8s.io/ingress-nginx/controller:v1.11.3@sha256:d5"),
            (
                "registry.k8s.io".into(),
                "ingress-nginx/controller".into(),
                "sha256:d5".into()
            )
        );
        // Docker Hub's short names, as docker and containerd read them.
        assert_eq!(
            s("bitnami/kubectl:1.30.2"),
            (
                "docker.io".into(),
                "bitnami/kubectl".into(),
                "1.30.2".into()
            )
        );
        assert_eq!(
            s("busybox:1.35"),
            ("docker.io".into(), "library/busybox".into(), "1.35".into())
        );
        assert_eq!(
            s("busybox"),
            (
                "docker.io".into(),
                "library/busybox".into(),
                "latest".into()
            )
        );
        assert_eq!(
            s("localhost/a:1"),
            ("localhost".into(), "a".into(), "1".into())
        );
    }
}
