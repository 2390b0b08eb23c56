use std::path::Path;

use super::*;

fn defaults() -> Value {
    json!({
        "kubernetes_distribution": "kurl", "ingress_mode": "internal", "domainPrefix": "",
        "domainSuffix": "wallaroo.example.com", "imageRegistry": "vendor.example/wallaroo",
        "imagePullSecrets": [], "deploymentStage": "", "custTlsSecret": "",
        "apilb": {"external_inference_endpoints_enabled": false},
        "assays": {"enabled": true, "version": "v2"},
        "nodeAffinityKey": "wallaroo.ai/node-purpose", "engineAffinity": "pipelines",
        "tolerations": [], "nodeSelectors": {},
        "ociRegistry": {"enabled": false}, "privatePypi": {"enabled": false},
        "keycloakAdmin": {"user": "admin", "password": "change-me"},
        "replicas": 1,
    })
}

fn node(name: &str, labels: &[(&str, &str)], taints: &[&str]) -> LiveNode {
    LiveNode {
        name: name.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        taints: taints.iter().map(|t| t.to_string()).collect(),
        in_scope: true,
    }
}

const PURPOSE: &str = NODE_PURPOSE_LABEL;

/// An install made by hand the guide's way, with a marker secret wherever one can be.
fn hand_install() -> LiveInstall {
    LiveInstall {
        release_name: "wallaroo".into(),
        namespace: "wallaroo".into(),
        revision: 1,
        chart_name: "wallaroo".into(),
        chart_version: "2025.1.0-6290".into(),
        config: json!({
            // image-values.yaml
            "imageRegistry": "harbor.corp:8443/wallaroo",
            "imagePullSecrets": [{"name": "wallaroo-registry"}],
            // the operator's values file
            "domainSuffix": "ml.corp.example",
            "kubernetes_distribution": "eks",
            "ingress_mode": "external",
            "deploymentStage": "cust",
            "custTlsSecret": "corp-tls",
            "assays": {"enabled": false},
            "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
            "ociRegistry": {"enabled": true, "registry": "edge.corp:5000", "username": "edge",
                            "password": "MARKER-EDGE", "observability": false},
            // --set
            "replicas": 3,
            "keycloakAdmin": {"password": "MARKER-KC"},
            "extra": {"note": "holds MARKER-PULL inside"},
            // --set-file
            "caBundle": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        }),
        chart_defaults: defaults(),
        nodes: vec![
            node("n-general", &[(PURPOSE, "general"), ("pool", "gen")], &[]),
            // Labelled for a pool, not tainted.
            node(
                "n-persistent",
                &[(PURPOSE, "persistent"), ("disk", "ssd")],
                &[],
            ),
            // Two pools share `disk=ssd`; the pipelines nodes alone carry `nodegroup=pipe`.
            node(
                "n-pipe-1",
                &[
                    (PURPOSE, "pipelines"),
                    ("disk", "ssd"),
                    ("eks.amazonaws.com/nodegroup", "pipe"),
                    ("kubernetes.io/hostname", "n-pipe-1"),
                ],
                &["wallaroo.ai/pipelines=true:NoSchedule"],
            ),
            node(
                "n-pipe-2",
                &[
                    (PURPOSE, "pipelines"),
                    ("disk", "ssd"),
                    ("eks.amazonaws.com/nodegroup", "pipe"),
                ],
                &["wallaroo.ai/pipelines=true:NoSchedule", "other=1:NoExecute"],
            ),
            node("n-other", &[("disk", "ssd")], &[]),
        ],
        pull_secrets: BTreeMap::from([(
            "wallaroo-registry".into(),
            BTreeMap::from([("harbor.corp:8443".into(), "robot".into())]),
        )]),
        secrets: BTreeMap::from([("corp-tls".into(), "kubernetes.io/tls".into())]),
        users: Ok(vec![
            LiveUser {
                username: "ada@corp.example".into(),
                email: Some("ada@corp.example".into()),
                admin: true,
            },
            LiveUser {
                username: "bob".into(),
                email: Some("bob@corp.example".into()),
                admin: false,
            },
            LiveUser {
                username: "svc".into(),
                email: None,
                admin: false,
            },
        ]),
        known_secrets: BTreeSet::from(["MARKER-PULL".to_string()]),
    }
}

fn hints() -> Hints {
    Hints {
        registry_username: None,
        vendor_registry: Some("registry.wallaroo.ai".into()),
        vendor_username: Some("corp".into()),
        base_dir: PathBuf::from("."),
        ..Hints::default()
    }
}

fn parse(g: &Generated) -> wallaroo_spec::Spec {
    let inputs = wallaroo_spec::VarInputs {
        env: g
            .variables
            .iter()
            .map(|v| (v.name.clone(), format!("value-of-{}", v.name)))
            .collect(),
        ..Default::default()
    };
    wallaroo_spec::parse_str("wallaroo.hcl", &g.text, Path::new("."), &inputs)
        .unwrap_or_else(|e| panic!("{e:?}\n{}", g.text))
}

#[test]
fn a_hand_install_becomes_a_spec_that_gives_its_values_back() {
    let live = hand_install();
    let g = spec_from_live(&live, &hints());
    let text = &g.text;
    assert_eq!(
        wallaroo_spec::format::format_hcl(text).unwrap(),
        *text,
        "fmt-clean"
    );
    for marker in ["MARKER-EDGE", "MARKER-KC", "MARKER-PULL"] {
        assert!(!text.contains(marker), "{marker} in:\n{text}");
        assert!(!g.report.join("\n").contains(marker), "{marker} in report");
    }
    let spec = parse(&g);
    assert_eq!(spec.wallaroo.domain, "ml.corp.example");
    assert_eq!(
        spec.networking.ingress_mode,
        wallaroo_spec::model::IngressMode::External
    );
    assert_eq!(
        spec.assays.version,
        wallaroo_spec::model::AssaysVersion::Disabled
    );
    let reg = spec.registry.as_ref().unwrap();
    assert_eq!(
        (reg.host.as_str(), reg.namespace.as_str()),
        ("harbor.corp:8443", "wallaroo")
    );
    assert_eq!(reg.username.as_deref(), Some("robot"));
    assert_eq!(
        spec.tls.as_ref().unwrap().secret_name.as_deref(),
        Some("corp-tls")
    );
    assert_eq!(spec.edge_registry.as_ref().unwrap().url, "edge.corp:5000");
    // Unmapped values stay in helm { values }, secrets as variables.
    assert_eq!(spec.helm.values["replicas"], json!(3));
    assert!(
        spec.helm.values["caBundle"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE")
    );
    let names: Vec<&str> = g.variables.iter().map(|v| v.name.as_str()).collect();
    for want in [
        "vendor_password",
        "registry_password",
        "edge_registry_password",
        "helm_keycloak_admin_password",
        "helm_extra_note",
    ] {
        assert!(names.contains(&want), "{want} not in {names:?}");
    }
    // The round trip: the spec's values are the release's, as the helm kind compares them.
    let (desired, secrets) = values_with(&spec, true);
    let (mut live_values, live_secrets) = split(&live.config, &secrets);
    fill_defaults(&mut live_values, &desired, &live.chart_defaults);
    assert_eq!(live_values, desired);
    assert_eq!(
        live_secrets["ociRegistry"]["password"],
        json!("MARKER-EDGE")
    );
    assert_eq!(
        secrets["ociRegistry"]["password"],
        json!("value-of-edge_registry_password")
    );
    // The tolerations the spec language holds only with an explicit value: the operator's
    // are kept whole in helm { values }, so nothing changes.
    assert!(spec.helm.values.get("tolerations").is_some(), "{text}");
}

#[test]
fn nodes_group_into_the_guides_pools_by_label_or_by_name() {
    let g = spec_from_live(&hand_install(), &hints());
    let spec = parse(&g);
    let general = &spec.nodepool["general"];
    assert_eq!(
        general.selector,
        BTreeMap::from([("pool".to_string(), "gen".to_string())])
    );
    // `disk=ssd` is shared with another pool and a node in none: not a selector.
    assert_eq!(spec.nodepool["persistent"].nodes, vec!["n-persistent"]);
    // The cloud's node-group label wins over the others the pipelines nodes share.
    assert_eq!(
        spec.nodepool["pipelines-x86"].selector,
        BTreeMap::from([(
            "eks.amazonaws.com/nodegroup".to_string(),
            "pipe".to_string()
        )])
    );
    // The persistent node keeps the guide's taint, which the plan adds; the report says so.
    assert_eq!(
        spec.nodepool["persistent"].taints,
        Some(vec!["wallaroo.ai/persistent=true:NoSchedule".to_string()])
    );
    let block = g.text.split("nodepool \"persistent\" {").nth(1).unwrap();
    assert!(
        !block.split('}').next().unwrap().contains("taints"),
        "{}",
        g.text
    );
    let report = g.report.join("\n");
    assert!(
        report.contains(
            "node n-persistent is labelled for pool persistent but its taints differ: the plan will add the taint wallaroo.ai/persistent=true:NoSchedule"
        ),
        "{report}"
    );
    assert!(!report.contains("n-pipe-2"), "{report}");
}

#[test]
fn nodes_out_of_scope_join_no_pool_but_keep_a_label_from_being_a_selector() {
    let mut live = hand_install();
    // Another install's general node, outside the scope, labelled `pool=gen` too.
    let mut other = node("elsewhere", &[(PURPOSE, "general"), ("pool", "gen")], &[]);
    other.in_scope = false;
    live.nodes.push(other);
    let g = spec_from_live(&live, &hints());
    let spec = parse(&g);
    assert_eq!(spec.nodepool["general"].nodes, vec!["n-general"]);
    assert!(spec.nodepool["general"].selector.is_empty());
}

#[test]
fn users_are_written_by_email_without_passwords() {
    let g = spec_from_live(&hand_install(), &hints());
    let spec = parse(&g);
    assert_eq!(
        spec.user.keys().collect::<Vec<_>>(),
        ["ada@corp.example", "bob@corp.example"]
    );
    assert_eq!(
        spec.user["ada@corp.example"].role,
        wallaroo_spec::model::Role::Admin
    );
    assert!(spec.user.values().all(|u| u.password.is_none()));
    assert_eq!(spec.import["user[\"bob@corp.example\"]"].id, "bob");
    assert!(!spec.import.contains_key("user[\"ada@corp.example\"]"));
    let report = g.report.join("\n");
    assert!(
        report.contains("Keycloak user svc has no email"),
        "{report}"
    );
}

#[test]
fn a_value_the_spec_cannot_hold_is_reported_not_lost() {
    let mut live = hand_install();
    live.config["kubernetes_distribution"] = json!("openshift");
    live.config["domainPrefix"] = json!("ml");
    let g = spec_from_live(&live, &hints());
    let spec = parse(&g);
    assert_eq!(spec.wallaroo.domain_prefix, "ml");
    assert_eq!(
        spec.helm.values["kubernetes_distribution"],
        json!("openshift")
    );
    assert!(
        g.report
            .iter()
            .any(|l| l.contains("kubernetes_distribution is `openshift`")),
        "{:?}",
        g.report
    );
    let (desired, secrets) = values_with(&spec, true);
    let (mut live_values, _) = split(&live.config, &secrets);
    fill_defaults(&mut live_values, &desired, &live.chart_defaults);
    assert_eq!(live_values, desired);
}

#[test]
fn hcl_keys_and_strings_are_quoted_where_they_must_be() {
    let v = json!({"a.b": "x${y}", "plain": ["q", 1], "list": [{"k": "v"}]});
    let text = format!("helm {{\n  values = {}\n}}\n", hcl::hcl(&v, 1));
    let spec = wallaroo_spec::parse_str(
        "t.hcl",
        &format!(
            "wallaroo {{\n  version = \"1.0.0\"\n  license_channel = \"1\"\n  domain = \"a.example\"\n  kubernetes_distribution = \"kurl\"\n}}\nsource \"wallaroo\" {{\n  registry = \"v.example\"\n}}\nregistry \"private\" {{\n  host = \"p.example\"\n  namespace = \"w\"\n}}\n{text}"
        ),
        Path::new("."),
        &Default::default(),
    )
    .unwrap_or_else(|e| panic!("{e:?}\n{text}"));
    assert_eq!(spec.helm.values, v);
}
