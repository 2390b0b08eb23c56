//! The plan as Markdown for a pull-request comment: a summary table and collapsible
//! details per resource.

use serde_json::Value;
use wallaroo_engine::{Action, AttrChange, Plan};

use super::{inline, will};

pub fn plan(plan: &Plan) -> String {
    let s = plan.summary;
    let mut out = String::from("### wallaroo plan\n\n");
    let adopt = if s.adopt > 0 {
        format!(" {} to adopt,", s.adopt)
    } else {
        String::new()
    };
    out.push_str(&format!(
        "**Plan:{adopt} {} to add, {} to change, {} to destroy.**\n\n",
        s.add, s.change, s.destroy
    ));
    for w in &plan.warnings {
        out.push_str(&format!("> ⚠️ {w}\n\n"));
    }
    if let Some(checks) = plan
        .inputs
        .get("vendor_preflight")
        .and_then(Value::as_array)
    {
        out.push_str("| vendor preflight | outcome | message |\n|---|---|---|\n");
        for c in checks {
            let mark = match c["outcome"].as_str().unwrap_or("") {
                "pass" => "✅ pass",
                "warn" => "⚠️ warn",
                _ => "❌ fail",
            };
            out.push_str(&format!(
                "| {} | {mark} | {} |\n",
                c["check"].as_str().unwrap_or("").replace('|', "\\|"),
                c["message"].as_str().unwrap_or("").replace('|', "\\|")
            ));
        }
        out.push('\n');
    }
    if let Some(line) = super::transfer_line(plan) {
        out.push_str(&format!("{line}\n\n"));
    }
    if let Some(p) = plan.inputs.get("permissions") {
        out.push_str(&format!("{}\n\n", super::permissions_line(p)));
    }
    if let Some(r) = plan.inputs.get("rehearsal") {
        let lines = super::rehearsal_lines(r);
        out.push_str(&format!("{}\n", lines[0]));
        if lines.len() > 1 {
            out.push_str(&format!("\n```\n{}\n```\n", lines[1..].join("\n")));
        }
        out.push('\n');
    }
    if !plan.drift.is_empty() {
        out.push_str(&format!(
            "<details><summary>⚠️ {} object(s) changed outside of wallaroo</summary>\n\n",
            plan.drift.len()
        ));
        for d in &plan.drift {
            if d.deleted {
                out.push_str(&format!("- `{}` was deleted\n", d.address));
            } else {
                out.push_str(&format!(
                    "- `{}`\n\n```diff\n{}```\n",
                    d.address,
                    diff_block(&d.attributes)
                ));
            }
        }
        out.push_str("\n</details>\n\n");
    }
    let changes: Vec<_> = plan
        .changes
        .iter()
        .filter(|c| c.action != Action::NoOp || c.adopted)
        .collect();
    if changes.is_empty() {
        out.push_str("No changes. The cluster and the registry match the spec.\n");
        return out;
    }
    out.push_str("| | Resource | Action |\n|---|---|---|\n");
    for c in &changes {
        let what = match (c.adopted, c.action) {
            (true, Action::NoOp) => "will be adopted (already there; nothing written)".to_string(),
            (true, a) => format!("{} (adopted)", will(a)),
            (false, a) => will(a).to_string(),
        };
        out.push_str(&format!(
            "| `{}` | `{}` | {what} |\n",
            c.action.symbol(),
            c.address,
        ));
    }
    out.push('\n');
    for c in changes {
        let notes: String = super::notes(c)
            .iter()
            .map(|n| format!("> {n}\n\n"))
            .collect();
        out.push_str(&format!(
            "<details><summary><code>{} {}</code> {}</summary>\n\n{notes}```diff\n{}```\n\n</details>\n\n",
            c.action.symbol(),
            escape(&c.address.to_string()),
            will(c.action),
            diff_block(&c.attributes)
        ));
    }
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn diff_block(attrs: &[AttrChange]) -> String {
    let show = |a: &AttrChange, v: &Option<Value>| match (a.sensitive, v) {
        (true, _) => "(sensitive)".to_string(),
        (false, Some(v)) => {
            inline(v).unwrap_or_else(|| format!("{:?}", v.as_str().unwrap_or_default()))
        }
        (false, None) => "null".into(),
    };
    let mut out = String::new();
    for a in attrs {
        let note = if a.forces_replacement {
            "  # forces replacement"
        } else {
            ""
        };
        if a.before.is_some() || (a.sensitive && a.after.is_none()) {
            out.push_str(&format!("- {} = {}{note}\n", a.path, show(a, &a.before)));
        }
        if a.after.is_some() || a.sensitive {
            out.push_str(&format!("+ {} = {}{note}\n", a.path, show(a, &a.after)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn markdown_has_a_table_and_details() {
        let md = super::plan(&crate::render::text::tests_sample());
        assert!(md.contains("**Plan: 2 to add, 1 to change, 2 to destroy.**"));
        assert!(md.contains("| `-/+` | `helm_release.wallaroo` | must be replaced |"));
        assert!(
            md.contains("<details><summary><code>~ nodepool.general.node[&quot;n1&quot;]</code>")
        );
        assert!(md.contains("- labels[\"wallaroo.ai/node-purpose\"] = \"general\"\n+ labels[\"wallaroo.ai/node-purpose\"] = \"pipelines\""));
        assert!(md.contains("+ password = (sensitive)"));
        assert!(md.contains("changed outside of wallaroo"));
    }
}
