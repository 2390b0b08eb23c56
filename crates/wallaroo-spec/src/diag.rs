//! Diagnostics that point at a file, line and column.

use std::ops::Range;
use std::sync::Arc;

use miette::{Diagnostic, LabeledSpan, NamedSource, SourceSpan};

/// A file the spec language read: the spec itself or a `--var-file`.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub name: String,
    pub text: Arc<String>,
}

impl SourceFile {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> SourceFile {
        SourceFile {
            name: name.into(),
            text: Arc::new(text.into()),
        }
    }

    /// One-based line and column (in characters) of a byte offset; an offset inside a
    /// character counts as that character.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().count() + 1;
        (line, col)
    }

    /// The byte offset of a one-based line and column (in characters).
    pub fn offset_of(&self, line: usize, col: usize) -> usize {
        let mut offset = 0;
        for (i, l) in self.text.split_inclusive('\n').enumerate() {
            if i + 1 == line {
                let within = l
                    .char_indices()
                    .nth(col.saturating_sub(1))
                    .map_or(l.len(), |(b, _)| b);
                return (offset + within).min(self.text.len());
            }
            offset += l.len();
        }
        self.text.len()
    }
}

/// One problem in a spec, with where it is and what to do about it.
#[derive(Debug, thiserror::Error)]
#[error("{}", self.headline())]
pub struct SpecDiagnostic {
    pub message: String,
    pub help: Option<String>,
    /// File name, and line and column (one-based) when the problem has a location.
    pub file: Option<String>,
    pub location: Option<(usize, usize)>,
    snippet: Option<NamedSource<Arc<String>>>,
    labels: Vec<LabeledSpan>,
}

impl SpecDiagnostic {
    /// An HCL syntax error at the place the parser stopped.
    pub(crate) fn syntax(file: &SourceFile, e: &hcl_edit::parser::Error) -> SpecDiagnostic {
        let loc = e.location();
        let offset = file.offset_of(loc.line(), loc.column());
        SpecDiagnostic::at(
            file,
            offset..offset + 1,
            format!("syntax error: {}", e.message()),
        )
        .with_help(
            "fix the HCL syntax here; `wallaroo fmt` shows the file's structure once it parses",
        )
    }

    /// A problem at `span` of `file`.
    pub fn at(file: &SourceFile, span: Range<usize>, message: impl Into<String>) -> Self {
        let (line, col) = file.line_col(span.start);
        SpecDiagnostic {
            message: message.into(),
            help: None,
            file: Some(file.name.clone()),
            location: Some((line, col)),
            snippet: Some(NamedSource::new(&file.name, file.text.clone()).with_language("hcl")),
            labels: vec![LabeledSpan::new_primary_with_span(None, to_span(span))],
        }
    }

    /// A problem with no place in any file (a `-var` on the command line, say).
    pub fn general(message: impl Into<String>) -> Self {
        SpecDiagnostic {
            message: message.into(),
            help: None,
            file: None,
            location: None,
            snippet: None,
            labels: Vec::new(),
        }
    }

    /// The byte range the problem points at (its primary label), when it has a place.
    pub fn span(&self) -> Option<Range<usize>> {
        self.labels
            .first()
            .map(|l| l.offset()..l.offset() + l.len())
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Names the primary label.
    pub fn with_label(mut self, text: impl Into<String>) -> Self {
        if let Some(first) = self.labels.first_mut() {
            *first = LabeledSpan::new_primary_with_span(Some(text.into()), *first.inner());
        }
        self
    }

    /// Adds a secondary label in the same file, e.g. "first defined here".
    pub fn with_secondary(mut self, span: Range<usize>, text: impl Into<String>) -> Self {
        self.labels
            .push(LabeledSpan::new_with_span(Some(text.into()), to_span(span)));
        self
    }

    fn headline(&self) -> String {
        match (&self.file, self.location) {
            (Some(file), Some((line, col))) => format!("{file}:{line}:{col}: {}", self.message),
            (Some(file), None) => format!("{file}: {}", self.message),
            _ => self.message.clone(),
        }
    }
}

fn to_span(span: Range<usize>) -> SourceSpan {
    SourceSpan::new(span.start.into(), span.end.saturating_sub(span.start))
}

impl Diagnostic for SpecDiagnostic {
    fn code<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        Some(Box::new("wallaroo::spec"))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn std::fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.snippet.as_ref().map(|s| s as &dyn miette::SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        if self.labels.is_empty() {
            None
        } else {
            Some(Box::new(self.labels.iter().cloned()))
        }
    }
}

/// Every problem found in one spec; a spec with any of them is not used.
#[derive(Debug, thiserror::Error)]
#[error("{} problem{} in the spec", .0.len(), if .0.len() == 1 { "" } else { "s" })]
pub struct SpecErrors(pub Vec<SpecDiagnostic>);

impl From<SpecDiagnostic> for SpecErrors {
    fn from(d: SpecDiagnostic) -> Self {
        SpecErrors(vec![d])
    }
}

/// The closest candidate within a small edit distance, for "did you mean" hints.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based() {
        let f = SourceFile::new("x.hcl", "ab\ncde\n");
        assert_eq!(f.line_col(0), (1, 1));
        assert_eq!(f.line_col(4), (2, 2));
        assert_eq!(f.offset_of(2, 2), 4);
    }

    #[test]
    fn suggests_near_names_only() {
        assert_eq!(
            closest("verison", ["version", "namespace"]),
            Some("version")
        );
        assert_eq!(closest("zzzzzz", ["version", "namespace"]), None);
    }
}
