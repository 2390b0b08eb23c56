//! `wallaroo fmt`: canonical layout of HCL that keeps every comment.
//!
//! Two-space indentation by nesting depth, `=` aligned within runs of consecutive
//! attributes, single blank lines, one trailing newline; heredocs are left as written.
//! The result is checked to mean exactly what the input meant before it is returned.

/// Why a text could not be formatted.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("the file is not valid HCL: {0}")]
    Syntax(String),
    #[error("formatting would change the file's meaning; it was left as it is")]
    ChangedMeaning,
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Code,
    Str,
    Interp(usize),
    BlockComment,
}

struct Line {
    depth: usize,
    text: String,
    /// Byte index of an attribute's `=`, when the line is a one-line `key = value`.
    assign: Option<usize>,
    verbatim: bool,
}

/// Formats HCL text.
pub fn format_hcl(input: &str) -> Result<String, FormatError> {
    let before: hcl::Body = hcl::from_str(input).map_err(|e| FormatError::Syntax(e.to_string()))?;
    let mut lines: Vec<Line> = Vec::new();
    let mut stack = vec![Mode::Code];
    let mut depth: usize = 0;
    let mut heredoc: Option<String> = None;
    for raw in input.lines() {
        if let Some(marker) = &heredoc {
            if raw.trim() == marker {
                heredoc = None;
            }
            lines.push(Line {
                depth,
                text: raw.to_string(),
                assign: None,
                verbatim: true,
            });
            continue;
        }
        let in_comment = *stack.last().unwrap() == Mode::BlockComment;
        let text = if in_comment {
            raw.trim_end().to_string()
        } else {
            raw.trim().to_string()
        };
        let (opened, closed_first, marker) = scan(&text, &mut stack);
        let line_depth = depth.saturating_sub(closed_first);
        let assign = if in_comment { None } else { assignment(&text) };
        lines.push(Line {
            depth: line_depth,
            text,
            assign,
            verbatim: in_comment,
        });
        depth = (depth as isize + opened).max(0) as usize;
        heredoc = marker;
    }

    // Align `=` within runs of one-line attributes at the same depth.
    let mut i = 0;
    while i < lines.len() {
        if lines[i].assign.is_none() {
            i += 1;
            continue;
        }
        let mut j = i;
        while j < lines.len() && lines[j].assign.is_some() && lines[j].depth == lines[i].depth {
            j += 1;
        }
        let width = lines[i..j]
            .iter()
            .map(|l| key_of(l).len())
            .max()
            .unwrap_or(0);
        for line in &mut lines[i..j] {
            let key = key_of(line).to_string();
            let value = line.text[line.assign.unwrap() + 1..].trim().to_string();
            line.text = format!("{key:width$} = {value}");
        }
        i = j.max(i + 1);
    }

    let mut out = String::new();
    let mut blank = false;
    for line in &lines {
        if line.verbatim {
            out.push_str(&line.text);
            out.push('\n');
            blank = false;
            continue;
        }
        if line.text.is_empty() {
            blank = !out.is_empty();
            continue;
        }
        if blank && !line.text.starts_with(['}', ']', ')']) {
            out.push('\n');
        }
        blank = false;
        out.push_str(&"  ".repeat(line.depth));
        out.push_str(&line.text);
        out.push('\n');
    }
    let after: hcl::Body = hcl::from_str(&out).map_err(|_| FormatError::ChangedMeaning)?;
    if before != after {
        return Err(FormatError::ChangedMeaning);
    }
    Ok(out)
}

fn key_of(line: &Line) -> &str {
    line.text[..line.assign.unwrap()].trim_end()
}

/// `key = value` on one line (key an identifier or a quoted string), with balanced brackets.
fn assignment(text: &str) -> Option<usize> {
    let key_end = if let Some(rest) = text.strip_prefix('"') {
        rest.find('"')? + 2
    } else {
        text.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'))?
    };
    if key_end == 0 {
        return None;
    }
    let rest = &text[key_end..];
    let eq = key_end + rest.len() - rest.trim_start().len();
    if !text[eq..].starts_with('=') || text[eq..].starts_with("==") {
        return None;
    }
    let mut stack = vec![Mode::Code];
    let (opened, _, heredoc) = scan(text, &mut stack);
    (opened == 0 && heredoc.is_none() && stack == [Mode::Code]).then_some(eq)
}

/// Scans one line: returns the net change in bracket depth, how many closers lead the line,
/// and the marker of a heredoc the line opens.
fn scan(text: &str, stack: &mut Vec<Mode>) -> (isize, usize, Option<String>) {
    let chars: Vec<char> = text.chars().collect();
    let mut net = 0isize;
    let mut leading = 0usize;
    let mut at_start = true;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let mode = *stack.last().unwrap();
        match mode {
            Mode::BlockComment => {
                if c == '*' && next == Some('/') {
                    stack.pop();
                    i += 1;
                }
            }
            Mode::Str => match c {
                '\\' => i += 1,
                '"' => {
                    stack.pop();
                }
                '$' | '%' if next == Some('{') => {
                    stack.push(Mode::Interp(0));
                    i += 1;
                }
                _ => {}
            },
            Mode::Code | Mode::Interp(_) => {
                if c == '#' || (c == '/' && next == Some('/')) {
                    break;
                }
                if c == '/' && next == Some('*') {
                    stack.push(Mode::BlockComment);
                    i += 2;
                    continue;
                }
                if mode == Mode::Code && c == '<' && next == Some('<') {
                    let rest: String = chars[i + 2..].iter().collect();
                    let marker = rest.trim_start_matches('-').trim();
                    if !marker.is_empty() && marker.chars().all(|c| c.is_alphanumeric() || c == '_')
                    {
                        return (net, leading, Some(marker.to_string()));
                    }
                }
                match (c, mode) {
                    ('"', _) => stack.push(Mode::Str),
                    ('{', Mode::Interp(n)) => *stack.last_mut().unwrap() = Mode::Interp(n + 1),
                    ('}', Mode::Interp(0)) => {
                        stack.pop();
                    }
                    ('}', Mode::Interp(n)) => *stack.last_mut().unwrap() = Mode::Interp(n - 1),
                    ('{' | '[' | '(', Mode::Code) => net += 1,
                    ('}' | ']' | ')', Mode::Code) => {
                        net -= 1;
                        if at_start {
                            leading += 1;
                        }
                    }
                    _ => {}
                }
                if !matches!(c, '}' | ']' | ')' | ' ' | '\t') {
                    at_start = false;
                }
            }
        }
        i += 1;
    }
    (net, leading, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indents_aligns_and_keeps_comments() {
        let input = "# top\nwallaroo {\nversion=\"1\" # why\n    namespace   =   \"w\"\n\n\n  labels = {\n\"a/b\" = \"c\"\n  }\n}\n";
        let out = format_hcl(input).unwrap();
        assert_eq!(
            out,
            "# top\nwallaroo {\n  version   = \"1\" # why\n  namespace = \"w\"\n\n  labels = {\n    \"a/b\" = \"c\"\n  }\n}\n"
        );
        assert_eq!(format_hcl(&out).unwrap(), out, "formatting is idempotent");
    }

    #[test]
    fn heredocs_and_templates_are_untouched() {
        let input = "helm {\n  values = {\n    note = <<EOT\n  keep   this\nEOT\n    x = \"${var.a}-{b}\"\n  }\n}\n";
        let out = format_hcl(input).unwrap();
        assert!(out.contains("  keep   this\nEOT\n"), "{out}");
        assert!(out.contains("\n    x = \"${var.a}-{b}\"\n"), "{out}");
    }

    #[test]
    fn refuses_invalid_input() {
        assert!(matches!(
            format_hcl("wallaroo {"),
            Err(FormatError::Syntax(_))
        ));
    }
}
