use super::*;

/// What a chart's templates would render for `values`: one image per convention.
fn render(v: &Value) -> Vec<Observed> {
    let s = |p: &str| {
        v.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let or = |a: String, b: String| if a.is_empty() { b } else { a };
    let mut out = Vec::new();
    let mut push = |object: &str, reference: String| {
        out.push(Observed {
            object: format!("Deployment/{object}"),
            container: "main".into(),
            field: "image".into(),
            reference,
        })
    };
    // Bitnami: a host-only global registry over the image's own.
    push(
        "redis",
        format!(
            "{}/{}:{}",
            or(s("/global/imageRegistry"), s("/redis/image/registry")),
            s("/redis/image/repository"),
            s("/redis/image/tag")
        ),
    );
    // Wallaroo's: a prefix of host and path; the global one replaces it whole.
    for name in ["conductor", "keycloak"] {
        push(
            name,
            format!(
                "{}/{name}:{}",
                or(s("/global/imageRegistry"), s("/imageRegistry")),
                s(&format!("/images/{name}"))
            ),
        );
    }
    // A whole reference in one string, in a map of images.
    push("sidecar", s("/images/sidecar"));
    // A tag and a digest together.
    push(
        "pinned",
        format!(
            "{}:{}@{}",
            s("/pinned/image/repository"),
            s("/pinned/image/tag"),
            s("/pinned/image/digest")
        ),
    );
    // Three keys make the name.
    push(
        "assembled",
        format!(
            "{}/{}/{}:{}",
            s("/assembled/image/registry"),
            s("/assembled/image/org"),
            s("/assembled/image/name"),
            s("/assembled/image/tag")
        ),
    );
    // Written in the template.
    push("hardcoded", "busybox:1.36".into());
    out
}

fn chart_defaults() -> Value {
    json!({
        "global": {"imageRegistry": ""},
        "imageRegistry": "ghcr.io/wallaroolabs",
        "images": {"conductor": "2025.1.0", "keycloak": "2025.1.0", "sidecar": "quay.io/acme/sidecar:3.1"},
        "redis": {"image": {"registry": "docker.io", "repository": "bitnami/redis", "tag": "7.2", "pullPolicy": "IfNotPresent"}},
        "pinned": {"image": {"repository": "registry.k8s.io/pause", "tag": "3.10", "digest": format!("sha256:{}", "a".repeat(64))}},
        "assembled": {"image": {"registry": "nvcr.io", "org": "nvidia", "name": "k8s-device-plugin", "tag": "v0.17.0"}},
        "replicas": 1,
    })
}

fn target(reference: &str) -> Option<String> {
    if reference.starts_with("busybox") {
        // Mirrored too: only the template keeps it out of reach.
        return Some("private:5000/ns/busybox:1.36".into());
    }
    let (_, repo, tag) = crate::split_reference(reference);
    let name = repo.rsplit('/').next().unwrap();
    let sep = if tag.starts_with("sha256:") { '@' } else { ':' };
    Some(format!("private:5000/ns/{name}{sep}{tag}"))
}

fn merged(base: &Value, over: &Value) -> Value {
    let mut v = base.clone();
    wallaroo_engine::json::merge(&mut v, over);
    v
}

#[test]
fn every_convention_is_learned_from_where_the_markers_land() {
    let defaults = chart_defaults();
    let cands = candidates(&defaults, &json!({}));
    let paths: Vec<String> = cands.iter().map(|c| c.path.join(".")).collect();
    assert!(
        paths.contains(&"global.imageRegistry".to_string()),
        "{paths:?}"
    );
    assert!(
        !paths
            .iter()
            .any(|p| p.contains("pullPolicy") || p == "replicas"),
        "{paths:?}"
    );
    // A whole reference under a key that does not say so is a candidate too.
    let extra = candidates(
        &json!({"refs": {"a": "quay.io/x/y:1", "b": "not/a-ref", "c": "https://host/x:1"}}),
        &json!({}),
    );
    assert_eq!(
        extra.iter().map(|c| c.path.join(".")).collect::<Vec<_>>(),
        ["refs.a"]
    );
    let roles: BTreeMap<String, Role> = cands.iter().map(|c| (c.path.join("."), c.role)).collect();
    assert_eq!(roles["images.conductor"], Role::Tag);
    assert_eq!(roles["images.sidecar"], Role::Name);
    assert_eq!(roles["pinned.image.digest"], Role::Digest);
    let m = markers(&cands);
    let learned = solve(
        &m,
        &render(&defaults),
        &render(&merged(&defaults, &m.values)),
        &defaults,
        &json!({}),
        &target,
    );
    // Verify as the plan does: render once more with what was learned.
    let after = render(&merged(&defaults, &learned.values));
    let want: BTreeMap<&str, &str> = BTreeMap::from([
        ("Deployment/redis", "private:5000/ns/redis:7.2"),
        ("Deployment/conductor", "private:5000/ns/conductor:2025.1.0"),
        ("Deployment/keycloak", "private:5000/ns/keycloak:2025.1.0"),
        ("Deployment/sidecar", "private:5000/ns/sidecar:3.1"),
        // The digest survives, with the tag beside it.
        (
            "Deployment/pinned",
            "private:5000/ns/pause:3.10@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        ),
        (
            "Deployment/assembled",
            "private:5000/ns/k8s-device-plugin:v0.17.0",
        ),
    ]);
    for o in &after {
        if let Some(w) = want.get(o.object.as_str()) {
            assert_eq!(o.reference, *w, "{o:?}\n{learned:#?}");
        }
    }
    // The hard-coded image is named with why.
    assert_eq!(learned.unsolved.len(), 1, "{:#?}", learned.unsolved);
    assert_eq!(learned.unsolved[0].object, "Deployment/hardcoded");
    assert!(learned.unsolved[0].why.contains("written in the template"));
    // The global key is a prefix here (it replaces imageRegistry whole), and the evidence says so.
    assert_eq!(
        learned.values["global"]["imageRegistry"],
        json!("private:5000/ns")
    );
    let evidence = learned.evidence.join("\n");
    assert!(
        evidence.contains(
            "global.imageRegistry = \"private:5000/ns\": it replaces host and path in 3 images (learned by render)"
        ),
        "{evidence}"
    );
    // Tags and digests are left at the chart's values.
    assert!(learned.values["pinned"]["image"].get("digest").is_none());
    assert!(
        learned
            .values
            .get("images")
            .and_then(|i| i.get("conductor"))
            .is_none()
    );
}

#[test]
fn the_operators_values_stay_and_take_no_marker() {
    let defaults = chart_defaults();
    // The operator pointed the global prefix at the private registry by hand.
    let operator = json!({"global": {"imageRegistry": "private:5000/ns"}});
    let cands = candidates(&defaults, &operator);
    assert!(
        !cands
            .iter()
            .any(|c| c.path.join(".") == "global.imageRegistry")
    );
    let m = markers(&cands);
    let base = merged(&defaults, &operator);
    let learned = solve(
        &m,
        &render(&defaults),
        &render(&merged(&base, &m.values)),
        &defaults,
        &json!({}),
        &target,
    );
    assert!(
        learned.values.get("global").is_none(),
        "{:#?}",
        learned.values
    );
    let after = render(&merged(&base, &learned.values));
    assert!(
        after
            .iter()
            .filter(|o| o.object != "Deployment/hardcoded")
            .all(|o| o.reference.starts_with("private:5000/ns/")),
        "{after:#?}"
    );
}

#[test]
fn a_template_literal_that_no_value_can_move_is_explained() {
    let m = markers(&[Candidate {
        path: vec!["image".into(), "repository".into()],
        default: json!("acme/app"),
        role: Role::Name,
    }]);
    let marker = m.keys.keys().next().unwrap().clone();
    let default = vec![Observed {
        object: "Deployment/app".into(),
        container: "app".into(),
        field: "image".into(),
        reference: "docker.io/acme/app:1".into(),
    }];
    let marked = vec![Observed {
        object: "Deployment/app".into(),
        container: "app".into(),
        field: "image".into(),
        reference: format!("docker.io/{marker}:1"),
    }];
    let learned = solve(
        &m,
        &default,
        &marked,
        &json!({"image": {"repository": "acme/app"}}),
        &json!({}),
        &target,
    );
    assert_eq!(learned.unsolved.len(), 1);
    assert!(
        learned.unsolved[0].why.contains(
            "image.repository sets only part of it; the template writes `docker.io/` itself"
        ),
        "{:?}",
        learned.unsolved
    );
}
