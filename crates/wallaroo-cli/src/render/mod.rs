//! Views of plans and applies: human text, Markdown for pull requests, JSON. Each is a
//! pure function of engine data, so wording changes are reviewed in tests.

pub mod markdown;
pub mod text;

use serde_json::Value;
use wallaroo_engine::{Action, ResourceChange};

/// ANSI colour, only where it helps a human (a TTY, no NO_COLOR, no --no-color).
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub color: bool,
}

impl Style {
    pub fn plain() -> Style {
        Style { color: false }
    }

    pub fn action(&self, action: Action, text: &str) -> String {
        let code = match action {
            Action::Create => "32",
            Action::Update => "33",
            Action::Replace | Action::Delete => "31",
            Action::Read => "36",
            Action::NoOp => return text.to_string(),
        };
        self.paint(code, text)
    }

    pub fn bold(&self, text: &str) -> String {
        self.paint("1", text)
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
}

/// A value as one line of JSON, or `None` when it spans lines (multi-line strings).
pub fn inline(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if s.contains('\n') => None,
        other => Some(other.to_string()),
    }
}

/// Terraform's phrase for an action.
pub fn will(action: Action) -> &'static str {
    match action {
        Action::Create => "will be created",
        Action::Update => "will be updated in place",
        Action::Replace => "must be replaced",
        Action::Delete => "will be destroyed",
        Action::Read => "will be read during apply",
        Action::NoOp => "is up to date",
    }
}

/// What a change will do, in words, where the attributes alone do not say it: how apply
/// treats a helm release left `failed` or `pending-*`, and that the helm upgrade is the step
/// that restarts pods.
pub fn notes(change: &ResourceChange) -> Vec<String> {
    let mut notes = Vec::new();
    if change.kind != "helm_release" || !change.action.is_change() {
        return notes;
    }
    let status = change
        .attributes
        .iter()
        .find(|a| a.path == "status")
        .and_then(|a| a.before.as_ref())
        .and_then(Value::as_str);
    match status {
        Some("failed") => notes.push(
            "the release is `failed` (helm's last operation failed): apply runs `helm upgrade --install --atomic` again".into(),
        ),
        Some("pending-install") => notes.push(
            "a helm install was interrupted (`pending-install`): apply uninstalls the half-installed release, then installs it".into(),
        ),
        Some(s @ ("pending-upgrade" | "pending-rollback")) => notes.push(format!(
            "a helm operation was interrupted (`{s}`): apply rolls back to the last deployed revision, then upgrades"
        )),
        Some(s) if s != "deployed" => notes.push(format!(
            "the release is `{s}`: apply runs `helm upgrade --install` to make it `deployed`"
        )),
        _ => {}
    }
    if change.action == Action::Update {
        notes.push(
            "`helm upgrade` is the only step that restarts pods: those whose rendered templates change roll, the others are left alone".into(),
        );
    }
    notes
}

/// The plan's one line on the applying identity's rights (its `permissions` input).
pub fn permissions_line(p: &Value) -> String {
    let identity = p["identity"]
        .as_str()
        .unwrap_or("the identity that applies");
    let needs = p["needs"].as_u64().unwrap_or(0);
    let lacking = p["lacking"].as_array().map_or(0, Vec::len);
    match (p["checked"].as_bool(), lacking) {
        (Some(false), _) => {
            format!("Permissions: whether {identity} may apply this plan was not checked.")
        }
        (_, 0) => format!(
            "Permissions: {identity} may do everything apply needs ({needs} permissions checked with the API server)."
        ),
        (_, n) => {
            format!("Permissions: {identity} lacks {n} of the {needs} permissions apply needs.")
        }
    }
}

/// The plan's lines on the API server's rehearsal (its `rehearsal` input): how many writes
/// it rehearsed, each object it would replace (`-/+`), and each refusal with its field,
/// message and what to do.
pub fn rehearsal_lines(r: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let refused = r["refused"].as_array().cloned().unwrap_or_default();
    if r["skipped"].is_string() {
        out.push("Rehearsal: not run (see the warning below).".to_string());
        return out;
    }
    let rehearsed = r["rehearsed"].as_u64().unwrap_or(0);
    out.push(if refused.is_empty() {
        format!("Rehearsal: the API server accepts all {rehearsed} write(s) of this plan (dry run).")
    } else {
        format!(
            "Rehearsal: the API server would refuse {} of the {rehearsed} write(s) of this plan; apply would stop half way, so it refuses to start:",
            refused.len()
        )
    });
    for x in &refused {
        let field = x["field"]
            .as_str()
            .map(|f| format!(" ({f})"))
            .unwrap_or_default();
        out.push(format!(
            "  ! {}{field}: {}",
            x["object"].as_str().unwrap_or_default(),
            x["message"].as_str().unwrap_or_default()
        ));
        if let Some(h) = x["hint"].as_str().filter(|h| !h.is_empty()) {
            out.push(format!("      what to do: {h}"));
        }
    }
    for x in r["replacing"].as_array().into_iter().flatten() {
        out.push(format!(
            "  -/+ {} (apply deletes it and helm makes it again: helm {{ replace_immutable = true }})",
            x.as_str().unwrap_or_default()
        ));
    }
    for n in r["notes"].as_array().into_iter().flatten() {
        out.push(format!("  note: {}", n.as_str().unwrap_or_default()));
    }
    out
}

/// The plan's line on what mirroring sends at most (its `transfer` input), if it mirrors.
pub fn transfer_line(plan: &wallaroo_engine::Plan) -> Option<String> {
    let t = plan.inputs.get("transfer")?;
    let bytes = t["bytes_at_most"].as_u64()?;
    let images = t["images"].as_object().map_or(0, |m| m.len());
    Some(format!(
        "Mirroring sends at most {} ({images} image(s); blobs the private registry already holds are not sent): check its volume has room.",
        indicatif::HumanBytes(bytes)
    ))
}
