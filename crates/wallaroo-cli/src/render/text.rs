//! The plan as text, in Terraform's style.

use serde_json::Value;
use wallaroo_engine::{Action, AttrChange, Plan};

use super::{Style, inline, will};

const SENSITIVE: &str = "(sensitive)";

pub fn plan(plan: &Plan, style: Style) -> String {
    let mut out = String::new();
    if !plan.drift.is_empty() {
        out.push_str(&style.bold("Objects have changed outside of wallaroo:"));
        out.push_str("\n\n");
        for d in &plan.drift {
            if d.deleted {
                out.push_str(&format!(
                    "  # {} was deleted outside of wallaroo\n",
                    d.address
                ));
                continue;
            }
            out.push_str(&format!("  # {} has changed\n", d.address));
            out.push_str(&format!(
                "  {} {}\n",
                style.action(Action::Update, "~"),
                d.address
            ));
            attributes(&mut out, Action::Update, &d.attributes, style);
        }
        out.push('\n');
    }
    // Reads (outputs) are shown only beside real changes.
    let changes: Vec<_> = plan
        .changes
        .iter()
        .filter(|c| c.action != Action::NoOp || c.adopted)
        .collect();
    if !plan.has_changes() {
        out.push_str(&style.bold("No changes."));
        out.push_str(" The cluster and the registry match the spec.\n");
        warnings(&mut out, plan, style);
        return out;
    }
    out.push_str("wallaroo will perform the following actions:\n\n");
    for c in changes {
        if c.adopted && c.action == Action::NoOp {
            out.push_str(&format!(
                "  # {} will be adopted: it is already there as the spec says; apply records it and writes nothing\n\n",
                c.address
            ));
            continue;
        }
        let adopted = if c.adopted {
            " (adopted: already there, not in the lockfile)"
        } else {
            ""
        };
        out.push_str(&format!("  # {} {}{adopted}\n", c.address, will(c.action)));
        out.push_str(&format!(
            "{:>3} {}\n",
            style.action(c.action, c.action.symbol()),
            style.bold(&c.address.to_string())
        ));
        for note in super::notes(c) {
            out.push_str(&format!(
                "      # {note}
"
            ));
        }
        attributes(&mut out, c.action, &c.attributes, style);
        out.push('\n');
    }
    out.push_str(&summary_line(plan, style));
    if let Some(line) = super::transfer_line(plan) {
        out.push_str(&format!("{line}\n"));
    }
    warnings(&mut out, plan, style);
    out
}

fn warnings(out: &mut String, plan: &Plan, style: Style) {
    if let Some(p) = plan.inputs.get("permissions") {
        out.push_str(&format!("\n{}\n", super::permissions_line(p)));
    }
    if let Some(r) = plan.inputs.get("rehearsal") {
        out.push_str(&format!("{}\n", super::rehearsal_lines(r).join("\n")));
    }
    for w in &plan.warnings {
        out.push_str(&format!(
            "\n{} {w}\n",
            style.action(Action::Update, "Warning:")
        ));
    }
}

pub fn summary_line(plan: &Plan, style: Style) -> String {
    let s = plan.summary;
    let adopt = if s.adopt > 0 {
        format!(" {} to adopt,", s.adopt)
    } else {
        String::new()
    };
    let line = format!(
        "Plan:{adopt} {} to add, {} to change, {} to destroy.",
        s.add, s.change, s.destroy
    );
    format!("{}\n", style.bold(&line))
}

fn attributes(out: &mut String, action: Action, attrs: &[AttrChange], style: Style) {
    let width = attrs.iter().map(|a| a.path.len()).max().unwrap_or(0);
    for a in attrs {
        let (sym, act) = match (&a.before, &a.after, action) {
            (_, _, Action::Create) => ("+", Action::Create),
            (_, _, Action::Delete) => ("-", Action::Delete),
            (None, Some(_), _) if !a.sensitive => ("+", Action::Create),
            (Some(_), None, _) if !a.sensitive => ("-", Action::Delete),
            _ => ("~", Action::Update),
        };
        let pad = format!("{:width$}", a.path);
        let note = if a.forces_replacement {
            " # forces replacement"
        } else {
            ""
        };
        let value = |v: &Option<Value>| match (a.sensitive, v) {
            (true, _) => SENSITIVE.to_string(),
            // Large maps and lists are laid out over lines, under the attribute.
            (false, Some(v)) if (v.is_object() || v.is_array()) && v.to_string().len() > 72 => {
                serde_json::to_string_pretty(v)
                    .expect("JSON prints")
                    .replace('\n', "\n          ")
            }
            (false, Some(v)) => inline(v).unwrap_or_else(|| "<<multi-line>>".into()),
            (false, None) => "null".into(),
        };
        let body = match sym {
            "+" => value(&a.after),
            "-" => value(&a.before),
            _ if a.sensitive => SENSITIVE.to_string(),
            _ => {
                let multi = [&a.before, &a.after]
                    .iter()
                    .any(|v| v.as_ref().is_some_and(|v| inline(v).is_none()));
                if multi {
                    out.push_str(&format!(
                        "      {} {pad} = <<-EOT{note}\n",
                        style.action(act, sym)
                    ));
                    let text = |v: &Option<Value>| {
                        v.as_ref()
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string()
                    };
                    let (before, after) = (text(&a.before), text(&a.after));
                    let diff = similar::TextDiff::from_lines(&before, &after);
                    for change in diff.iter_all_changes() {
                        let (tag, act) = match change.tag() {
                            similar::ChangeTag::Delete => ("-", Action::Delete),
                            similar::ChangeTag::Insert => ("+", Action::Create),
                            similar::ChangeTag::Equal => (" ", Action::NoOp),
                        };
                        let line = change.value().trim_end_matches('\n');
                        out.push_str(&format!("          {} {line}\n", style.action(act, tag)));
                    }
                    out.push_str("        EOT\n");
                    continue;
                }
                format!("{} -> {}", value(&a.before), value(&a.after))
            }
        };
        out.push_str(&format!(
            "      {} {pad} = {body}{note}\n",
            style.action(act, sym)
        ));
    }
}

#[cfg(test)]
pub(crate) fn tests_sample() -> Plan {
    tests::sample()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use wallaroo_engine::{Address, Drift, PlanMode, ResourceChange, Summary};

    fn change(addr: &str, action: Action, attributes: Vec<AttrChange>) -> ResourceChange {
        ResourceChange {
            address: addr.parse().unwrap(),
            kind: "file".into(),
            action,
            depends_on: vec![],
            attributes,
            adopted: false,
        }
    }

    #[test]
    fn a_helm_release_left_failed_or_pending_says_what_apply_will_do() {
        let mut plan = sample();
        let mut release = change(
            "helm_release.wallaroo",
            Action::Update,
            vec![attr(
                "status",
                Some(json!("pending-upgrade")),
                Some(json!("deployed")),
            )],
        );
        release.kind = "helm_release".into();
        plan.changes = vec![release.clone()];
        let text = super::plan(&plan, Style::plain());
        assert!(
            text.contains("# a helm operation was interrupted (`pending-upgrade`): apply rolls back to the last deployed revision, then upgrades"),
            "{text}"
        );
        assert!(text.contains("`helm upgrade` is the only step that restarts pods"));
        release.attributes = vec![attr(
            "status",
            Some(json!("failed")),
            Some(json!("deployed")),
        )];
        plan.changes = vec![release];
        let md = crate::render::markdown::plan(&plan);
        assert!(md.contains("> the release is `failed`"), "{md}");
    }

    fn attr(path: &str, before: Option<Value>, after: Option<Value>) -> AttrChange {
        AttrChange {
            path: path.into(),
            before,
            after,
            sensitive: false,
            forces_replacement: false,
        }
    }

    pub(crate) fn sample() -> Plan {
        let changes = vec![
            change("namespace.wallaroo", Action::NoOp, vec![]),
            change(
                "file[\"a\"]",
                Action::Create,
                vec![
                    attr("path", None, Some(json!("a"))),
                    attr("content", None, Some(json!("x"))),
                ],
            ),
            change(
                "nodepool.general.node[\"n1\"]",
                Action::Update,
                vec![
                    attr(
                        "labels[\"wallaroo.ai/node-purpose\"]",
                        Some(json!("general")),
                        Some(json!("pipelines")),
                    ),
                    attr("labels.team", None, Some(json!("ml"))),
                    AttrChange {
                        path: "password".into(),
                        before: None,
                        after: None,
                        sensitive: true,
                        forces_replacement: false,
                    },
                    attr(
                        "notes",
                        Some(json!("one\ntwo\n")),
                        Some(json!("one\nthree\n")),
                    ),
                ],
            ),
            change(
                "helm_release.wallaroo",
                Action::Replace,
                vec![AttrChange {
                    path: "namespace".into(),
                    before: Some(json!("a")),
                    after: Some(json!("b")),
                    sensitive: false,
                    forces_replacement: true,
                }],
            ),
            change(
                "file[\"old\"]",
                Action::Delete,
                vec![attr("path", Some(json!("old")), None)],
            ),
        ];
        Plan {
            format_version: 1,
            wallaroo_version: "0.1.0".into(),
            mode: PlanMode::Apply,
            lineage: None,
            state_serial: None,
            salt: "s".into(),
            live_fingerprint: "l".into(),
            desired_fingerprint: "d".into(),
            targets: vec![],
            inputs: Default::default(),
            excludes: vec![],
            warnings: vec!["the TLS certificate expires on Dec 1 (in 5 days)".into()],
            drift: vec![Drift {
                address: "file[\"b\"]".parse::<Address>().unwrap(),
                kind: "file".into(),
                deleted: false,
                attributes: vec![attr(
                    "content",
                    Some(json!("applied")),
                    Some(json!("edited")),
                )],
            }],
            summary: Summary::of(&changes),
            changes,
        }
    }

    #[test]
    fn text_plan_reads_like_terraform() {
        let text = plan(&sample(), Style::plain());
        let expected = r#"Objects have changed outside of wallaroo:

  # file["b"] has changed
  ~ file["b"]
      ~ content = "applied" -> "edited"

wallaroo will perform the following actions:

  # file["a"] will be created
  + file["a"]
      + path    = "a"
      + content = "x"

  # nodepool.general.node["n1"] will be updated in place
  ~ nodepool.general.node["n1"]
      ~ labels["wallaroo.ai/node-purpose"] = "general" -> "pipelines"
      + labels.team                        = "ml"
      ~ password                           = (sensitive)
      ~ notes                              = <<-EOT
            one
          - two
          + three
        EOT

  # helm_release.wallaroo must be replaced
-/+ helm_release.wallaroo
      ~ namespace = "a" -> "b" # forces replacement

  # file["old"] will be destroyed
  - file["old"]
      - path = "old"

Plan: 2 to add, 1 to change, 2 to destroy.

Warning: the TLS certificate expires on Dec 1 (in 5 days)
"#;
        assert_eq!(text, expected);
    }

    #[test]
    fn no_changes_and_colour() {
        let mut p = sample();
        p.changes.retain(|c| c.action == Action::NoOp);
        p.drift.clear();
        p.warnings.clear();
        assert_eq!(
            plan(&p, Style::plain()),
            "No changes. The cluster and the registry match the spec.\n"
        );
        let coloured = plan(&sample(), Style { color: true });
        assert!(coloured.contains("\x1b[32m+\x1b[0m"));
        assert!(!plan(&sample(), Style::plain()).contains('\x1b'));
    }
}
