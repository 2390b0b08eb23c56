//! Views of plans and applies: human text, Markdown for pull requests, JSON. Each is a
//! pure function of engine data, so wording changes are reviewed in tests.

pub mod markdown;
pub mod text;

use serde_json::Value;
use wallaroo_engine::Action;

/// ANSI colour, only where it helps a human (a TTY, no NO_COLOR, no --no-color).
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub color: bool,
}

impl Style {
    #[cfg(test)]
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
