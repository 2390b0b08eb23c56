//! A forgiving look at spec text as it is being typed: which blocks there are and where, the
//! block the cursor is in, the variables declared. It never fails on half-written text
//! (braces left open, a string not closed); the validator says what is wrong with it.

/// A block (`nodepool "general" { ... }`), or an object value (`values = { ... }`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// The block type; for an object value, `=NAME`; for an object in a list, `=`.
    pub kind: String,
    pub labels: Vec<String>,
    /// Zero-based line and character of the header's start and of the closing brace (the
    /// end of the text when it is not closed).
    pub start: (u32, u32),
    pub end: (u32, u32),
    pub children: Vec<Span>,
    /// Attributes set directly in it: name, line, character.
    pub attrs: Vec<(String, u32, u32)>,
}

impl Span {
    pub fn is_block(&self) -> bool {
        !self.kind.starts_with('=')
    }
}

fn ident(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !s.starts_with(|c: char| c.is_ascii_digit())
}

/// What the text before a `{` on its statement says it opens.
fn header(stmt: &str) -> (String, Vec<String>) {
    let stmt = stmt.trim();
    if let Some(eq) = stmt.rfind('=') {
        let name = stmt[..eq].trim().trim_matches('"');
        return (format!("={name}"), Vec::new());
    }
    let mut words = Vec::new();
    let mut rest = stmt;
    while !rest.is_empty() {
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix('"') {
            let end = r.find('"').unwrap_or(r.len());
            words.push(format!("\"{}", &r[..end]));
            rest = r.get(end + 1..).unwrap_or("");
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            words.push(rest[..end].to_string());
            rest = &rest[end..];
        }
    }
    match words.split_first() {
        Some((kind, labels)) if ident(kind) && labels.iter().all(|l| l.starts_with('"')) => (
            kind.clone(),
            labels.iter().map(|l| l[1..].to_string()).collect(),
        ),
        _ => ("=".into(), Vec::new()),
    }
}

/// The blocks of `text`, nested.
pub fn outline(text: &str) -> Vec<Span> {
    let mut stack: Vec<Span> = Vec::new();
    let mut top: Vec<Span> = Vec::new();
    let mut stmt = String::new();
    let mut stmt_start: Option<(u32, u32)> = None;
    let (mut line, mut col) = (0u32, 0u32);
    let mut chars = text.chars().peekable();
    // In a string: the depth of `${` templates open inside it.
    let mut in_string = false;
    let mut template = 0usize;
    let mut brackets = 0usize;
    while let Some(c) = chars.next() {
        let here = (line, col);
        if c == '\n' {
            line += 1;
            col = 0;
        } else {
            col += c.len_utf16() as u32;
        }
        if in_string {
            match c {
                '\\' => {
                    if let Some(n) = chars.next() {
                        col += n.len_utf16() as u32;
                    }
                }
                '$' if chars.peek() == Some(&'{') => {
                    chars.next();
                    col += 1;
                    template += 1;
                }
                '}' if template > 0 => template -= 1,
                '"' if template == 0 => in_string = false,
                '\n' => in_string = false,
                _ => {}
            }
            stmt.push(c);
            continue;
        }
        match c {
            '#' | '/' if c == '#' || chars.peek() == Some(&'/') => {
                // A comment (`#` or `//`): to the end of the line.
                for n in chars.by_ref() {
                    if n == '\n' {
                        line += 1;
                        col = 0;
                        break;
                    }
                }
                if brackets == 0 {
                    stmt.clear();
                    stmt_start = None;
                }
            }
            '"' => {
                in_string = true;
                stmt_start.get_or_insert(here);
                stmt.push(c);
            }
            '[' => {
                brackets += 1;
                stmt.push(c);
            }
            ']' => {
                brackets = brackets.saturating_sub(1);
                stmt.push(c);
            }
            '{' => {
                let (kind, labels) =
                    if stmt.trim_end().ends_with('[') || stmt.trim_end().ends_with(',') {
                        ("=".to_string(), Vec::new())
                    } else {
                        header(stmt.rsplit(['[', ',']).next().unwrap_or(&stmt))
                    };
                stack.push(Span {
                    kind,
                    labels,
                    start: stmt_start.unwrap_or(here),
                    end: here,
                    children: Vec::new(),
                    attrs: Vec::new(),
                });
                stmt.clear();
                stmt_start = None;
                brackets = 0;
            }
            '}' => {
                if let Some(mut done) = stack.pop() {
                    done.end = here;
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(done),
                        None => top.push(done),
                    }
                }
                stmt.clear();
                stmt_start = None;
            }
            '\n' if brackets == 0 => {
                if let Some(parent) = stack.last_mut()
                    && let Some((name, _)) = stmt.split_once('=')
                    && ident(name.trim())
                    && let Some(start) = stmt_start
                {
                    parent
                        .attrs
                        .push((name.trim().to_string(), start.0, start.1));
                }
                stmt.clear();
                stmt_start = None;
            }
            c if c.is_whitespace() => stmt.push(c),
            c => {
                stmt_start.get_or_insert(here);
                stmt.push(c);
            }
        }
    }
    // Blocks left open end where the text ends.
    while let Some(mut open) = stack.pop() {
        open.end = (line, col);
        match stack.last_mut() {
            Some(parent) => parent.children.push(open),
            None => top.push(open),
        }
    }
    top
}

/// The blocks (and object values) enclosing a position, outermost first.
pub fn enclosing(spans: &[Span], pos: (u32, u32)) -> Vec<&Span> {
    let mut path = Vec::new();
    let mut level = spans;
    loop {
        let inside = level.iter().find(|s| {
            // Inside the braces: after the header's line start and before the closing brace.
            (s.start < pos) && (pos <= s.end) && s.start.0 <= pos.0
        });
        match inside {
            Some(s) => {
                path.push(s);
                level = &s.children;
            }
            None => return path,
        }
    }
}

/// A `variable "NAME"` block's declaration.
#[derive(Debug, Clone)]
pub struct Variable {
    pub name: String,
    pub line: u32,
    pub col: u32,
    pub body: String,
}

/// The variables `text` declares, with the text of their blocks.
pub fn variables(text: &str, spans: &[Span]) -> Vec<Variable> {
    let lines: Vec<&str> = text.lines().collect();
    spans
        .iter()
        .filter(|s| s.kind == "variable" && s.labels.len() == 1)
        .map(|s| {
            let body = lines
                .get(s.start.0 as usize..=(s.end.0 as usize).min(lines.len().saturating_sub(1)))
                .map(|l| l.join("\n"))
                .unwrap_or_default();
            Variable {
                name: s.labels[0].clone(),
                line: s.start.0,
                col: s.start.1,
                body,
            }
        })
        .collect()
}

/// One attribute's value in a block's text (`type = string` gives `string`), when simple.
pub fn simple_value(body: &str, attr: &str) -> Option<String> {
    body.lines().find_map(|l| {
        let (name, value) = l.split_once('=')?;
        (name.trim() == attr).then(|| value.trim().trim_matches('"').to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"variable "pw" {
  type      = string
  sensitive = true
}

nodepool "general" {
  nodes  = ["a", "b"]
  labels = { "x" = "${var.pw}" }
}

helm {
  values = {
    deploymentStage = "x"
  }
  timeout = "2m"
}
"#;

    #[test]
    fn blocks_labels_attributes_and_objects_are_found() {
        let spans = outline(TEXT);
        let kinds: Vec<(&str, Vec<String>)> = spans
            .iter()
            .map(|s| (s.kind.as_str(), s.labels.clone()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("variable", vec!["pw".to_string()]),
                ("nodepool", vec!["general".to_string()]),
                ("helm", vec![])
            ]
        );
        let helm = &spans[2];
        assert_eq!(helm.children[0].kind, "=values");
        let names: Vec<&str> = helm.attrs.iter().map(|a| a.0.as_str()).collect();
        assert_eq!(names, ["timeout"]);
        let path: Vec<&str> = enclosing(&spans, (12, 6))
            .iter()
            .map(|s| s.kind.as_str())
            .collect();
        assert_eq!(path, ["helm", "=values"]);
        let vars = variables(TEXT, &spans);
        assert_eq!(vars[0].name, "pw");
        assert_eq!(
            simple_value(&vars[0].body, "sensitive").as_deref(),
            Some("true")
        );
    }

    #[test]
    fn half_written_text_still_gives_an_outline() {
        let spans = outline("networking {\n  ingress_mode = \"int\n");
        assert_eq!(spans[0].kind, "networking");
    }
}
