//! `wallaroo lsp`: a Language Server Protocol server for wallaroo specs over stdio.
//!
//! Everything it says comes from the spec crate wallaroo itself uses: diagnostics are what
//! `wallaroo validate` reports (the spec's parser and validator, then the desired model's
//! checks), with their help; completion and hover come from the spec types' schema and
//! docs/spec.md ([`knowledge`]); formatting is `wallaroo fmt`'s. A forgiving scan of the text
//! ([`scan`]) finds where the cursor is, so half-written text still completes.
//!
//! Sensitive values never appear: hover on `var.NAME` shows a variable's default only when
//! the variable is not `sensitive`, and completion offers names, never values.

pub mod knowledge;
pub mod scan;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lsp_server::{Connection, Message, Notification, Request, Response};
use lsp_types::{
    CompletionItem, CompletionItemKind, Diagnostic, DiagnosticSeverity, DocumentSymbol, Hover,
    HoverContents, Location, MarkupContent, MarkupKind, Position, Range, SymbolKind, TextEdit, Uri,
};
use serde_json::Value;

use knowledge::Knowledge;
use scan::Span;

/// How long the text must rest after an edit before it is validated again.
pub const DEBOUNCE: Duration = Duration::from_millis(25);

/// The diagnostics `wallaroo validate` gives for `text` (read as the file at `path`, so
/// relative paths resolve beside it).
pub fn diagnostics(path: &Path, text: &str) -> Vec<Diagnostic> {
    let inputs = wallaroo_spec::VarInputs {
        env: wallaroo_spec::VarInputs::env_from_process(),
        ..Default::default()
    };
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.display().to_string();
    let file = wallaroo_spec::SourceFile::new(name.clone(), text);
    let problems = match wallaroo_spec::parse_str(&name, text, base, &inputs) {
        Ok(spec) => match wallaroo_model::from_spec(&spec) {
            Ok(_) => return Vec::new(),
            Err(e) => vec![(None, None, e.to_string(), None)],
        },
        Err(errors) => errors
            .0
            .iter()
            .filter(|d| d.file.as_deref().is_none_or(|f| f == name))
            .map(|d| (d.location, d.span(), d.message.clone(), d.help.clone()))
            .collect(),
    };
    problems
        .into_iter()
        .map(|(location, span, message, help)| {
            let range = match (span, location) {
                (Some(span), _) => {
                    let (l0, c0) = file.line_col(span.start);
                    let (l1, c1) = file.line_col(span.end.max(span.start + 1));
                    range(
                        (l0 - 1) as u32,
                        (c0 - 1) as u32,
                        (l1 - 1) as u32,
                        (c1 - 1) as u32,
                    )
                }
                (None, Some((l, c))) => {
                    range((l - 1) as u32, (c - 1) as u32, (l - 1) as u32, c as u32)
                }
                _ => range(0, 0, 0, 1),
            };
            Diagnostic {
                range,
                severity: Some(DiagnosticSeverity::ERROR),
                source: Some("wallaroo".into()),
                message: match help {
                    Some(h) => format!("{message}\nhelp: {h}"),
                    None => message,
                },
                ..Default::default()
            }
        })
        .collect()
}

fn range(l0: u32, c0: u32, l1: u32, c1: u32) -> Range {
    Range {
        start: Position {
            line: l0,
            character: c0,
        },
        end: Position {
            line: l1,
            character: c1,
        },
    }
}

/// The text of `line` up to `character`.
fn prefix(text: &str, pos: Position) -> String {
    let line = text.lines().nth(pos.line as usize).unwrap_or("");
    let mut out = String::new();
    let mut units = 0u32;
    for c in line.chars() {
        if units >= pos.character {
            break;
        }
        units += c.len_utf16() as u32;
        out.push(c);
    }
    out
}

/// The word (identifier, with dots) around a position, and where it starts.
fn word_at(text: &str, pos: Position) -> Option<(String, u32)> {
    let line = text.lines().nth(pos.line as usize)?;
    let chars: Vec<char> = line.chars().collect();
    let at = (pos.character as usize).min(chars.len());
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.';
    let mut start = at;
    while start > 0 && is_word(chars[start - 1]) {
        start -= 1;
    }
    let mut end = at;
    while end < chars.len() && is_word(chars[end]) {
        end += 1;
    }
    (start < end).then(|| (chars[start..end].iter().collect(), start as u32))
}

/// The innermost real block (not an object value) at a position, and whether the position
/// is inside an object value of it.
fn block_at(spans: &[Span], pos: Position) -> (Option<&Span>, bool) {
    let path = scan::enclosing(spans, (pos.line, pos.character));
    let in_object = path.last().is_some_and(|s| !s.is_block());
    (path.iter().rev().find(|s| s.is_block()).copied(), in_object)
}

fn item(label: &str, kind: CompletionItemKind, detail: Option<String>) -> CompletionItem {
    CompletionItem {
        label: label.to_string(),
        kind: Some(kind),
        detail,
        ..Default::default()
    }
}

/// Completion at `pos`: variable names after `var.`, nodepool names after `nodepool.`, enum
/// values after `attr = `, attribute and block names at the start of a line.
pub fn completion(k: &Knowledge, text: &str, pos: Position) -> Vec<CompletionItem> {
    let spans = scan::outline(text);
    let before = prefix(text, pos);
    let tail = before
        .rsplit(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.'))
        .next()
        .unwrap_or("");
    if let Some(partial) = tail.strip_prefix("var.") {
        return scan::variables(text, &spans)
            .into_iter()
            .filter(|v| v.name.starts_with(partial))
            .map(|v| {
                let ty = scan::simple_value(&v.body, "type");
                item(&v.name, CompletionItemKind::VARIABLE, ty)
            })
            .collect();
    }
    if let Some(partial) = tail.rsplit_once("nodepool.").map(|(_, p)| p) {
        return spans
            .iter()
            .filter(|s| s.kind == "nodepool" && s.labels.len() == 1)
            .filter(|s| s.labels[0].starts_with(partial))
            .map(|s| {
                item(
                    &s.labels[0],
                    CompletionItemKind::REFERENCE,
                    Some("nodepool".into()),
                )
            })
            .collect();
    }
    let (block, in_object) = block_at(&spans, pos);
    // `attr = "par`: the attribute's enum values.
    let trimmed = before.trim_start();
    if let Some((attr, value)) = trimmed.split_once('=') {
        let attr = attr.trim();
        let partial = value.trim().trim_start_matches(['"', '[', ' ']);
        let Some(b) = block.and_then(|b| k.blocks.get(&b.kind)) else {
            return Vec::new();
        };
        // Inside a list of objects (tolerations), the attribute belongs to the items.
        let values = b
            .attrs
            .get(attr)
            .cloned()
            .filter(|v| !v.is_empty())
            .or_else(|| k.nested_enums.get(attr).cloned())
            .unwrap_or_default();
        return values
            .iter()
            .filter(|v| v.starts_with(partial.trim_matches('"')))
            .map(|v| item(v, CompletionItemKind::ENUM_MEMBER, Some(attr.to_string())))
            .collect();
    }
    if in_object {
        return Vec::new();
    }
    match block {
        // Attribute names of the block, those not set yet first.
        Some(b) => {
            let Some(info) = k.blocks.get(&b.kind) else {
                return Vec::new();
            };
            // Set elsewhere in the block (the one on this line is being typed).
            let set: Vec<&str> = b
                .attrs
                .iter()
                .filter(|a| a.1 != pos.line)
                .map(|a| a.0.as_str())
                .collect();
            info.attrs
                .keys()
                .filter(|a| a.starts_with(trimmed) && !set.contains(&a.as_str()))
                .map(|a| {
                    let detail = info.docs.get(a).map(|d| d.ty.clone());
                    item(a, CompletionItemKind::PROPERTY, detail)
                })
                .collect()
        }
        // Block types at the top level.
        None => k
            .blocks
            .iter()
            .filter(|(name, _)| name.starts_with(trimmed))
            .map(|(name, b)| {
                let mut it = item(name, CompletionItemKind::STRUCT, Some(b.heading.clone()));
                it.insert_text = Some(match (&b.fixed_label, b.labelled) {
                    (Some(l), _) => format!("{name} \"{l}\" {{\n  \n}}"),
                    (None, true) => format!("{name} \"\" {{\n  \n}}"),
                    _ => format!("{name} {{\n  \n}}"),
                });
                it
            })
            .collect(),
    }
}

/// Hover at `pos`: an attribute's or block's documentation, or a variable's declaration
/// (its default only when it is not sensitive).
pub fn hover(k: &Knowledge, text: &str, pos: Position) -> Option<String> {
    let spans = scan::outline(text);
    let (word, _) = word_at(text, pos)?;
    if let Some(name) = word.strip_prefix("var.") {
        let v = scan::variables(text, &spans)
            .into_iter()
            .find(|v| v.name == name)?;
        let sensitive = scan::simple_value(&v.body, "sensitive").as_deref() == Some("true");
        let mut out = format!("**var.{name}**");
        if let Some(t) = scan::simple_value(&v.body, "type") {
            out.push_str(&format!(" ({t})"));
        }
        if let Some(d) = scan::simple_value(&v.body, "description") {
            out.push_str(&format!("\n\n{d}"));
        }
        if sensitive {
            out.push_str("\n\nsensitive: its value is never shown");
        } else if let Some(d) = scan::simple_value(&v.body, "default") {
            out.push_str(&format!("\n\ndefault: `{d}`"));
        }
        return Some(out);
    }
    let (block, _) = block_at(&spans, pos);
    match block {
        // The block's own header line: the block type.
        Some(b) if b.start.0 == pos.line && b.kind == word => k.block_hover(&word),
        Some(b) => k
            .attr_hover(&b.kind, &word)
            .or_else(|| k.block_hover(&word)),
        None => k.block_hover(&word),
    }
}

/// Go to definition: `var.NAME` to its `variable "NAME"` block.
pub fn definition(text: &str, pos: Position) -> Option<(u32, u32)> {
    let (word, _) = word_at(text, pos)?;
    let name = word.strip_prefix("var.")?;
    let spans = scan::outline(text);
    scan::variables(text, &spans)
        .into_iter()
        .find(|v| v.name == name)
        .map(|v| (v.line, v.col))
}

/// The outline: blocks (with their labels) and their attributes.
pub fn symbols(text: &str) -> Vec<DocumentSymbol> {
    fn of(s: &Span) -> Option<DocumentSymbol> {
        if !s.is_block() {
            return None;
        }
        let name = if s.labels.is_empty() {
            s.kind.clone()
        } else {
            format!("{} \"{}\"", s.kind, s.labels.join("\" \""))
        };
        let mut children: Vec<DocumentSymbol> = s.children.iter().filter_map(of).collect();
        children.extend(s.attrs.iter().map(|(a, l, c)| {
            let r = range(*l, *c, *l, *c + a.len() as u32);
            #[allow(deprecated)]
            DocumentSymbol {
                name: a.clone(),
                detail: None,
                kind: SymbolKind::PROPERTY,
                tags: None,
                deprecated: None,
                range: r,
                selection_range: r,
                children: None,
            }
        }));
        let r = range(s.start.0, s.start.1, s.end.0, s.end.1 + 1);
        #[allow(deprecated)]
        Some(DocumentSymbol {
            name,
            detail: None,
            kind: SymbolKind::STRUCT,
            tags: None,
            deprecated: None,
            range: r,
            selection_range: range(
                s.start.0,
                s.start.1,
                s.start.0,
                s.start.1 + s.kind.len() as u32,
            ),
            children: Some(children),
        })
    }
    scan::outline(text).iter().filter_map(of).collect()
}

/// `wallaroo fmt` of the whole text, as one edit (none when it is already formatted or does
/// not parse: the diagnostics say why).
pub fn formatting(text: &str) -> Vec<TextEdit> {
    match wallaroo_spec::format::format_hcl(text) {
        Ok(formatted) if formatted != text => {
            let lines = text.lines().count() as u32;
            vec![TextEdit {
                range: range(0, 0, lines + 1, 0),
                new_text: formatted,
            }]
        }
        _ => Vec::new(),
    }
}

fn uri_path(uri: &Uri) -> PathBuf {
    let s = uri.as_str();
    let path = s.strip_prefix("file://").unwrap_or(s);
    PathBuf::from(percent_decode(path))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Runs the server on stdin and stdout until the client says exit.
pub fn run_stdio() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let (connection, io) = Connection::stdio();
    let capabilities = serde_json::json!({
        "textDocumentSync": {"openClose": true, "change": 1, "save": {"includeText": false}},
        "completionProvider": {"triggerCharacters": [".", "\"", "="]},
        "hoverProvider": true,
        "definitionProvider": true,
        "documentSymbolProvider": true,
        "documentFormattingProvider": true,
    });
    let (id, _params) = connection.initialize_start()?;
    connection.initialize_finish(
        id,
        serde_json::json!({
            "capabilities": capabilities,
            "serverInfo": {"name": "wallaroo", "version": env!("CARGO_PKG_VERSION")},
        }),
    )?;
    serve(&connection)?;
    // The writer ends once the connection is gone; the reader at the end of stdin.
    drop(connection);
    io.join()?;
    Ok(())
}

fn serve(connection: &Connection) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let knowledge = Knowledge::load();
    let mut docs: HashMap<String, (Uri, String)> = HashMap::new();
    // Documents edited and not yet validated, with when they last changed.
    let mut pending: HashMap<String, Instant> = HashMap::new();
    loop {
        let wait = pending
            .values()
            .map(|t| (*t + DEBOUNCE).saturating_duration_since(Instant::now()))
            .min()
            .unwrap_or(Duration::from_secs(3600));
        match connection.receiver.recv_timeout(wait) {
            Ok(Message::Request(req)) => {
                if connection.handle_shutdown(&req)? {
                    return Ok(());
                }
                let resp = answer(&knowledge, &docs, req);
                connection.sender.send(Message::Response(resp))?;
            }
            Ok(Message::Notification(n)) => {
                let key = n.params["textDocument"]["uri"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                match n.method.as_str() {
                    "textDocument/didOpen" => {
                        let uri: Uri =
                            serde_json::from_value(n.params["textDocument"]["uri"].clone())?;
                        let text = n.params["textDocument"]["text"]
                            .as_str()
                            .unwrap_or("")
                            .to_string();
                        docs.insert(key.clone(), (uri, text));
                        // On open at once.
                        publish(connection, &docs[&key])?;
                    }
                    "textDocument/didChange" => {
                        if let Some(doc) = docs.get_mut(&key)
                            && let Some(text) = n.params["contentChanges"]
                                .as_array()
                                .and_then(|c| c.last())
                                .and_then(|c| c["text"].as_str())
                        {
                            doc.1 = text.to_string();
                            pending.insert(key, Instant::now());
                        }
                    }
                    "textDocument/didSave" => {
                        if let Some(doc) = docs.get(&key) {
                            publish(connection, doc)?;
                        }
                    }
                    "textDocument/didClose" => {
                        docs.remove(&key);
                        pending.remove(&key);
                    }
                    "exit" => return Ok(()),
                    _ => {}
                }
            }
            Ok(Message::Response(_)) => {}
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return Ok(()),
        }
        let now = Instant::now();
        let due: Vec<String> = pending
            .iter()
            .filter(|(_, t)| now >= **t + DEBOUNCE)
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            pending.remove(&key);
            if let Some(doc) = docs.get(&key) {
                publish(connection, doc)?;
            }
        }
    }
}

fn publish(
    connection: &Connection,
    (uri, text): &(Uri, String),
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let params = lsp_types::PublishDiagnosticsParams {
        uri: uri.clone(),
        diagnostics: diagnostics(&uri_path(uri), text),
        version: None,
    };
    connection
        .sender
        .send(Message::Notification(Notification::new(
            "textDocument/publishDiagnostics".into(),
            params,
        )))?;
    Ok(())
}

fn answer(k: &Knowledge, docs: &HashMap<String, (Uri, String)>, req: Request) -> Response {
    let key = req.params["textDocument"]["uri"].as_str().unwrap_or("");
    let Some((uri, text)) = docs.get(key) else {
        return Response::new_ok(req.id, Value::Null);
    };
    let pos: Position =
        serde_json::from_value(req.params["position"].clone()).unwrap_or(Position {
            line: 0,
            character: 0,
        });
    let result = match req.method.as_str() {
        "textDocument/completion" => serde_json::to_value(completion(k, text, pos)),
        "textDocument/hover" => serde_json::to_value(hover(k, text, pos).map(|h| Hover {
            contents: HoverContents::Markup(MarkupContent {
                kind: MarkupKind::Markdown,
                value: h,
            }),
            range: None,
        })),
        "textDocument/definition" => {
            serde_json::to_value(definition(text, pos).map(|(l, c)| Location {
                uri: uri.clone(),
                range: range(l, c, l, c),
            }))
        }
        "textDocument/documentSymbol" => serde_json::to_value(symbols(text)),
        "textDocument/formatting" => serde_json::to_value(formatting(text)),
        _ => {
            return Response::new_err(
                req.id,
                lsp_server::ErrorCode::MethodNotFound as i32,
                format!("{} is not supported", req.method),
            );
        }
    };
    Response::new_ok(req.id, result.unwrap_or(Value::Null))
}

#[cfg(test)]
mod tests;
