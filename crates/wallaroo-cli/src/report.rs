//! How failures reach the terminal: miette reports, coloured only on a TTY without NO_COLOR.

use std::io::IsTerminal;

use miette::{Diagnostic, GraphicalReportHandler, GraphicalTheme};

/// A command's failure, ready to render.
#[derive(Debug)]
pub enum Failure {
    Spec(wallaroo_spec::SpecErrors),
    /// Preflight checks, shown before the message.
    Preflight(Vec<wallaroo_operations::preflight::Check>, String),
    Message(String),
    /// Stopped by Ctrl-C; what was left behind, or not.
    Interrupted(String),
}

impl From<wallaroo_operations::OperationError> for Failure {
    fn from(e: wallaroo_operations::OperationError) -> Self {
        use wallaroo_operations::OperationError as E;
        let message = e.to_string();
        match e {
            E::Spec(errors) => Failure::Spec(errors),
            E::Preflight(checks) => Failure::Preflight(checks, message),
            _ => Failure::Message(message),
        }
    }
}

/// The style of stdout: colour only on a TTY, never with NO_COLOR or --no-color.
pub fn stdout_style(global: &crate::args::Global) -> crate::render::Style {
    let color = !global.no_color
        && std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    crate::render::Style { color }
}

impl Failure {
    pub fn message(m: impl Into<String>) -> Failure {
        Failure::Message(m.into())
    }

    /// The failure as plain text, for a JSON `diagnostic` event.
    pub fn plain(&self) -> String {
        match self {
            Failure::Spec(errors) => errors
                .0
                .iter()
                .map(|d| render(d))
                .chain(Some(errors.to_string()))
                .collect::<Vec<_>>()
                .join("\n"),
            Failure::Preflight(checks, m) => format!(
                "Preflight:\n{}{m}",
                crate::commands::preflight::render(checks)
            ),
            Failure::Message(m) | Failure::Interrupted(m) => m.clone(),
        }
    }
}

impl From<wallaroo_spec::SpecErrors> for Failure {
    fn from(e: wallaroo_spec::SpecErrors) -> Self {
        Failure::Spec(e)
    }
}

/// Whether stderr may carry colour.
pub fn color_on_stderr() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn handler() -> GraphicalReportHandler {
    let theme = if color_on_stderr() {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    GraphicalReportHandler::new_themed(theme).with_context_lines(1)
}

/// Renders one diagnostic to a string.
pub fn render(diag: &dyn Diagnostic) -> String {
    let mut out = String::new();
    if handler().render_report(&mut out, diag).is_err() {
        out = diag.to_string();
    }
    out
}

pub fn print_failure(failure: &Failure) {
    match failure {
        Failure::Spec(errors) => {
            for d in &errors.0 {
                eprintln!("{}", render(d));
            }
            eprintln!("Error: {errors}");
        }
        Failure::Preflight(checks, m) => {
            eprint!("Preflight:\n{}", crate::commands::preflight::render(checks));
            eprintln!("Error: {m}");
        }
        Failure::Message(m) | Failure::Interrupted(m) => eprintln!("Error: {m}"),
    }
}
