//! Image keys learned from the chart's own render, not assumed from a naming convention.
//!
//! Charts name their images in many ways: a host-only `global.imageRegistry` (Bitnami), a
//! prefix of host and path (`imageRegistry`, Wallaroo's), `registry` + `repository` + `tag` +
//! `digest` splits, a whole reference in one string, maps of images, images assembled from
//! several keys. Instead of guessing, the release is rendered once with a distinct marker in
//! every candidate key ([`candidates`], [`markers`]): where each marker lands in each rendered
//! reference shows what that key does there. [`solve`] then chooses the values that turn every
//! rendered reference into exactly the target wallaroo mirrors it to, consistently across all
//! the images a key moves, and says for each key what it does and in how many images. Keys
//! the operator set in `helm { values }` take no marker: their values stay, as written.
//!
//! Pure: the two renders (the chart's defaults and the markers) are the caller's.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

/// What a candidate key's marker stands for, from its name and its default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Part of an image's name: registry, repository, a prefix, a whole reference.
    Name,
    /// A tag.
    Tag,
    /// A digest (`sha256:...`).
    Digest,
}

/// A values key that may take part in an image reference.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub path: Vec<String>,
    pub default: Value,
    pub role: Role,
}

/// Words in a values key that make it a candidate (`imageRegistry`, `image.repository`,
/// `images.foo`, `tag`, `digest`, `registryPrefix`).
const KEY_WORDS: &[&str] = &["registry", "repository", "image", "tag", "digest", "prefix"];
/// Keys with those words that are not parts of a reference.
const NOT_KEYS: &[&str] = &["pullpolicy", "pullsecret", "tagsuffix"];

/// The candidate keys of a chart's values (its own and its subcharts', under their names):
/// string (or null) leaves whose key, or whose parent's key, names an image part. `fixed`
/// (the operator's `helm { values }`) are left out: their values stay as written.
pub fn candidates(values: &Value, fixed: &Value) -> Vec<Candidate> {
    fn walk(
        v: &Value,
        fixed: Option<&Value>,
        path: &mut Vec<String>,
        parent_image: bool,
        out: &mut Vec<Candidate>,
    ) {
        let Value::Object(m) = v else {
            return;
        };
        for (k, child) in m {
            let lower = k.to_ascii_lowercase();
            let excluded = NOT_KEYS.iter().any(|w| lower.contains(w));
            let named = KEY_WORDS.iter().any(|w| lower.contains(w)) && !excluded;
            let fixed_child = fixed.and_then(|f| f.get(k));
            path.push(k.clone());
            match child {
                Value::Object(_) => walk(child, fixed_child, path, named || lower == "global", out),
                Value::String(_) | Value::Null
                    if (named
                        || parent_image
                        || child.as_str().is_some_and(looks_like_reference))
                        && !excluded
                        && fixed_child.is_none() =>
                {
                    let text = child.as_str().unwrap_or("");
                    let role = if lower.contains("digest") || text.starts_with("sha256:") {
                        Role::Digest
                    } else if lower.contains("tag") || (parent_image && looks_like_tag(text)) {
                        Role::Tag
                    } else {
                        Role::Name
                    };
                    out.push(Candidate {
                        path: path.clone(),
                        default: child.clone(),
                        role,
                    });
                }
                _ => {}
            }
            path.pop();
        }
    }
    let mut out = Vec::new();
    walk(values, Some(fixed), &mut Vec::new(), false, &mut out);
    out
}

/// `registry.example:5000/team/app:1.0` (or `@sha256:...`): a whole reference with a
/// registry host, under whatever key.
fn looks_like_reference(text: &str) -> bool {
    let Some((first, rest)) = text.split_once('/') else {
        return false;
    };
    let host = first.contains('.') || first.contains(':') || first == "localhost";
    let last = rest.rsplit('/').next().unwrap_or(rest);
    host && !text.contains(char::is_whitespace)
        && !text.contains("://")
        && (last.contains(':') || last.contains('@'))
}

/// `v1.2.3`, `2025.1.0-6290`, `latest`: no `/`, no host.
fn looks_like_tag(text: &str) -> bool {
    !text.is_empty()
        && !text.contains('/')
        && !text.contains(':')
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        && text
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit() || c == 'v' || text == "latest")
}

/// A marker per candidate, and the values that set them all.
#[derive(Debug, Clone)]
pub struct Markers {
    pub values: Value,
    /// Marker text -> the key it was put in, and its role.
    pub keys: BTreeMap<String, (Vec<String>, Role)>,
}

/// The markers: a host and a path segment for name keys (`wlm7.invalid/wlm7p`), a SemVer
/// tag for tags (templates compare them), a well-formed digest for digests. Each is unique
/// and none is found inside another.
pub fn markers(candidates: &[Candidate]) -> Markers {
    let mut values = json!({});
    let mut keys = BTreeMap::new();
    for (i, c) in candidates.iter().enumerate() {
        let marker = match c.role {
            Role::Name => format!("wlm{i}x.invalid/wlm{i}p"),
            Role::Tag => format!("9.9.{i}-wlm{i}t"),
            Role::Digest => format!("sha256:{:0>64}", format!("{i:x}f")),
        };
        wallaroo_engine::json::set_path(&mut values, &c.path, json!(marker));
        keys.insert(marker, (c.path.clone(), c.role));
    }
    Markers { values, keys }
}

/// One container's image as a render named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// `Kind/name` of the object, the container's name and where in it (`image`, or the
    /// n-th `args`/`command`/`env` string that names an image): the same place in the two
    /// renders.
    pub object: String,
    pub container: String,
    pub field: String,
    pub reference: String,
}

/// A reference no choice of values could turn into its target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsolved {
    pub object: String,
    pub container: String,
    pub reference: String,
    pub target: String,
    /// What each key tried does there, or that no key reaches it.
    pub why: String,
}

/// What the render taught: values that point every image at its target, one line per key
/// saying what it does and in how many images, and the references nothing could move.
#[derive(Debug, Clone, Default)]
pub struct Learned {
    pub values: Value,
    pub evidence: Vec<String>,
    pub unsolved: Vec<Unsolved>,
    /// Other values that solve as many images by the markers, best first (at most
    /// [`ALTERNATIVES`]): where a template transforms a value (trims, takes a path's base,
    /// replaces), the markers cannot show it, and only a real render tells which is right.
    pub alternatives: Vec<Value>,
}

/// How many other solutions [`solve`] keeps for the caller to prove by render.
pub const ALTERNATIVES: usize = 7;

/// Where a reference's name ends (before `:tag` and `@digest`).
fn name_end(reference: &str) -> usize {
    let end = reference.find('@').unwrap_or(reference.len());
    let slash = reference[..end].rfind('/').map_or(0, |i| i + 1);
    match reference[slash..end].rfind(':') {
        Some(i) => slash + i,
        None => end,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Lit(String),
    Key(String),
    /// Part of a key's marker, as a template transformed it (`base`, `trimPrefix`, a split):
    /// what the key's own value becomes there is unknown, so an option that leaves the key
    /// as it is and matches any text here is only a guess, which the caller proves by render.
    Frag(String),
}

/// The value an option gives a key it leaves as the chart has it (its marker was only seen
/// transformed): never written.
const LEFT_AS_IS: &str = "\u{0}left as is";

/// `reference` as literal text and markers.
fn pieces(reference: &str, markers: &Markers) -> Vec<(usize, usize, Piece)> {
    let mut found: Vec<(usize, usize, String)> = Vec::new();
    for m in markers.keys.keys() {
        let mut from = 0;
        while let Some(i) = reference[from..].find(m.as_str()) {
            let at = from + i;
            found.push((at, at + m.len(), m.clone()));
            from = at + m.len();
        }
    }
    found.sort();
    let mut out = Vec::new();
    let mut pos = 0;
    for (start, end, m) in found {
        if start < pos {
            continue;
        }
        if start > pos {
            out.push((pos, start, Piece::Lit(reference[pos..start].to_string())));
        }
        out.push((start, end, Piece::Key(m)));
        pos = end;
    }
    if pos < reference.len() {
        out.push((
            pos,
            reference.len(),
            Piece::Lit(reference[pos..].to_string()),
        ));
    }
    // A half of a name marker in a literal: the template transformed that key's value.
    let halves: Vec<(String, String)> = markers
        .keys
        .iter()
        .filter(|(_, (_, role))| *role == Role::Name)
        .flat_map(|(m, _)| {
            m.split('/')
                .filter(|h| !h.is_empty())
                .map(|h| (h.to_string(), m.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    let mut split = Vec::new();
    for (start, end, p) in out {
        let Piece::Lit(text) = &p else {
            split.push((start, end, p));
            continue;
        };
        let hit = halves
            .iter()
            .filter_map(|(h, m)| text.find(h.as_str()).map(|i| (i, h.len(), m.clone())))
            .min();
        match hit {
            Some((i, len, m)) => {
                if i > 0 {
                    split.push((start, start + i, Piece::Lit(text[..i].to_string())));
                }
                split.push((start + i, start + i + len, Piece::Frag(m)));
                if i + len < text.len() {
                    split.push((
                        start + i + len,
                        end,
                        Piece::Lit(text[i + len..].to_string()),
                    ));
                }
            }
            None => split.push((start, end, p)),
        }
    }
    split
}

/// Every way the name pieces can spell `target`, each key's value a non-empty part, a key
/// met twice the same both times. Splits fall at `/` boundaries or where a literal matches.
fn spellings(
    pieces: &[Piece],
    target: &str,
    pos: usize,
    given: &mut BTreeMap<String, String>,
    out: &mut Vec<BTreeMap<String, String>>,
) {
    if out.len() >= 64 {
        return;
    }
    let Some((first, rest)) = pieces.split_first() else {
        if pos == target.len() {
            out.push(given.clone());
        }
        return;
    };
    match first {
        Piece::Lit(l) => {
            if target[pos..].starts_with(l.as_str()) {
                spellings(rest, target, pos + l.len(), given, out);
            }
        }
        Piece::Frag(k) => {
            // The key left as the chart has it; its transformed value any text here.
            if given.get(k).is_some_and(|v| v != LEFT_AS_IS) {
                return;
            }
            let ends: Vec<usize> = (pos + 1..=target.len())
                .filter(|&e| {
                    e == target.len()
                        || target[e..].starts_with('/')
                        || matches!(rest.first(), Some(Piece::Lit(l)) if target[e..].starts_with(l.as_str()))
                })
                .collect();
            let had = given.insert(k.clone(), LEFT_AS_IS.to_string());
            for e in ends {
                spellings(rest, target, e, given, out);
            }
            if had.is_none() {
                given.remove(k);
            }
        }
        Piece::Key(k) => {
            if let Some(v) = given.get(k).cloned() {
                if v == LEFT_AS_IS {
                    return;
                }
                if target[pos..].starts_with(v.as_str()) {
                    spellings(rest, target, pos + v.len(), given, out);
                }
                return;
            }
            let ends: Vec<usize> = (pos + 1..=target.len())
                .filter(|&e| {
                    e == target.len()
                        || target[e..].starts_with('/')
                        || matches!(rest.first(), Some(Piece::Lit(l)) if target[e..].starts_with(l.as_str()))
                })
                .collect();
            for e in ends {
                given.insert(k.clone(), target[pos..e].to_string());
                spellings(rest, target, e, given, out);
                given.remove(k);
            }
        }
    }
}

fn slashes(s: &str) -> usize {
    s.matches('/').count()
}

/// Learns the values that point every image at its target.
///
/// `already` holds the values the release is installed with (a key already set to what is
/// needed is not set again). `default` is the render with the chart's own image keys (what discovery read: the
/// vendor's references), `marked` the render with [`markers`] set. `target_of` gives the
/// mirrored target of a default reference (`None`: not mirrored, left alone).
pub fn solve(
    markers: &Markers,
    default: &[Observed],
    marked: &[Observed],
    defaults: &Value,
    already: &Value,
    target_of: &dyn Fn(&str) -> Option<String>,
) -> Learned {
    let default_of = |path: &[String]| -> String {
        path.iter()
            .try_fold(defaults, |v, k| v.get(k))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    // Each image: the ways its name can be spelled, best first.
    struct Image {
        object: String,
        container: String,
        reference: String,
        want: String,
        options: Vec<BTreeMap<String, String>>,
        why: String,
    }
    let mut images = Vec::new();
    let mut seen = BTreeSet::new();
    for m in marked {
        let Some(d) = default
            .iter()
            .find(|d| d.object == m.object && d.container == m.container && d.field == m.field)
        else {
            continue;
        };
        let Some(target) = target_of(&d.reference) else {
            continue;
        };
        if !seen.insert((m.object.clone(), m.container.clone(), m.field.clone())) {
            continue;
        }
        let source_tail = &d.reference[name_end(&d.reference)..];
        let target_name = &target[..name_end(&target)];
        let want = format!("{target_name}{source_tail}");
        let all = pieces(&m.reference, markers);
        let cut = name_end(&m.reference);
        let mut name: Vec<Piece> = Vec::new();
        let mut tail_has_name_key = false;
        for (start, end, p) in &all {
            if *end <= cut {
                name.push(p.clone());
            } else if *start < cut {
                // A literal across the name's end: its part before the end.
                if let Piece::Lit(l) = p {
                    name.push(Piece::Lit(l[..cut - start].to_string()));
                }
            } else if let Piece::Key(k) = p
                && markers.keys[k].1 == Role::Name
            {
                tail_has_name_key = true;
            }
        }
        let marked_tail_empty = cut == m.reference.len();
        let mut options = Vec::new();
        let mut why = String::new();
        if tail_has_name_key {
            why = "a name key lands in its tag".into();
        } else if !name.iter().any(|p| matches!(p, Piece::Key(_))) {
            why = if m.reference == d.reference {
                "no values key reaches it (written in the template)".into()
            } else {
                "no values key reaches its name".into()
            };
        } else {
            // A key that is the whole reference (`image: repo:tag`) carries its tag too.
            let straddler = marked_tail_empty && !source_tail.is_empty();
            let mut found = Vec::new();
            spellings(&name, target_name, 0, &mut BTreeMap::new(), &mut found);
            if straddler && let Some(Piece::Key(last)) = name.last() {
                for f in &mut found {
                    if let Some(v) = f.get_mut(last) {
                        v.push_str(source_tail);
                    }
                }
            } else if straddler {
                found.clear();
            }
            // Best first: each value as many `/`s as the key's default has (a host stays a
            // host, a repository a repository).
            // Exact options before guesses (a key left as the chart has it, matching any
            // text where the template transformed it).
            found.sort_by_key(|f| {
                let guesses = f.values().filter(|v| *v == LEFT_AS_IS).count();
                let slashes_off = f
                    .iter()
                    .filter(|(_, v)| *v != LEFT_AS_IS)
                    .map(|(k, v)| {
                        let d = default_of(&markers.keys[k].0);
                        slashes(v).abs_diff(slashes(&d))
                    })
                    .sum::<usize>();
                (guesses, slashes_off)
            });
            if found.is_empty() {
                let keys: Vec<String> = name
                    .iter()
                    .filter_map(|p| match p {
                        Piece::Key(k) => Some(markers.keys[k].0.join(".")),
                        Piece::Lit(_) | Piece::Frag(_) => None,
                    })
                    .collect();
                let lits: Vec<String> = name
                    .iter()
                    .filter_map(|p| match p {
                        Piece::Lit(l) if l != "/" => Some(format!("`{l}`")),
                        _ => None,
                    })
                    .collect();
                why = format!(
                    "{} {} only part of it; the template writes {} itself",
                    keys.join(", "),
                    if keys.len() == 1 { "sets" } else { "set" },
                    if lits.is_empty() {
                        "the rest".to_string()
                    } else {
                        lits.join(", ")
                    }
                );
            }
            options = found;
        }
        images.push(Image {
            object: m.object.clone(),
            container: m.container.clone(),
            reference: d.reference.clone(),
            want,
            options,
            why,
        });
    }
    // One value per key across every image: the choice that leaves the fewest images
    // unsolved, best options first (a bounded search; charts have few shared keys).
    struct Search<'a> {
        images: &'a [Image],
        chosen: BTreeMap<String, String>,
        skipped: Vec<usize>,
        best: Option<(BTreeMap<String, String>, Vec<usize>)>,
        /// Other choices that leave as few images unsolved as the best.
        others: Vec<BTreeMap<String, String>>,
        budget: usize,
    }
    impl Search<'_> {
        fn full(&self) -> bool {
            self.others.len() >= ALTERNATIVES
        }

        fn run(&mut self, i: usize) {
            if self.budget == 0 {
                return;
            }
            self.budget -= 1;
            if let Some((_, best)) = &self.best
                && (self.skipped.len() > best.len()
                    || (self.skipped.len() == best.len() && self.full()))
            {
                return;
            }
            let Some(image) = self.images.get(i) else {
                match &self.best {
                    Some((chosen, skipped)) if skipped.len() == self.skipped.len() => {
                        if *chosen != self.chosen && !self.others.contains(&self.chosen) {
                            self.others.push(self.chosen.clone());
                        }
                    }
                    _ => {
                        self.others.clear();
                        self.best = Some((self.chosen.clone(), self.skipped.clone()));
                    }
                }
                return;
            };
            for o in &image.options {
                if o.iter()
                    .all(|(k, v)| self.chosen.get(k).is_none_or(|c| c == v))
                {
                    let added: Vec<String> = o
                        .keys()
                        .filter(|k| !self.chosen.contains_key(*k))
                        .cloned()
                        .collect();
                    self.chosen
                        .extend(o.iter().map(|(k, v)| (k.clone(), v.clone())));
                    self.run(i + 1);
                    for k in added {
                        self.chosen.remove(&k);
                    }
                    if self.best.as_ref().is_some_and(|(_, s)| s.is_empty()) && self.full() {
                        return;
                    }
                }
            }
            // Or leave this image unsolved.
            self.skipped.push(i);
            self.run(i + 1);
            self.skipped.pop();
        }
    }
    let mut search = Search {
        images: &images,
        chosen: BTreeMap::new(),
        skipped: Vec::new(),
        best: None,
        others: Vec::new(),
        budget: 20_000,
    };
    search.run(0);
    let others = std::mem::take(&mut search.others);
    let (chosen, skipped) = search
        .best
        .unwrap_or_else(|| (BTreeMap::new(), (0..images.len()).collect()));
    // A key whose chosen value is the chart's own, or what the release's values already
    // say (`imageRegistry`, which the spec maps), needs no setting.
    let unchanged: Vec<String> = chosen
        .iter()
        .filter(|(m, v)| {
            let (path, _) = &markers.keys[*m];
            *v == LEFT_AS_IS
                || [defaults, already].iter().any(|base| {
                    path.iter()
                        .try_fold(*base, |d, k| d.get(k))
                        .and_then(Value::as_str)
                        == Some(v.as_str())
                })
        })
        .map(|(m, _)| m.clone())
        .collect();
    let mut learned = Learned::default();
    let mut values = json!({});
    let mut uses: BTreeMap<Vec<String>, (usize, BTreeSet<&'static str>)> = BTreeMap::new();
    for (marker, value) in chosen.iter().filter(|(m, _)| !unchanged.contains(m)) {
        let (path, _) = &markers.keys[marker];
        wallaroo_engine::json::set_path(&mut values, path, json!(value));
    }
    for (i, image) in images.iter().enumerate() {
        if skipped.contains(&i) {
            learned.unsolved.push(Unsolved {
                object: image.object.clone(),
                container: image.container.clone(),
                reference: image.reference.clone(),
                target: image.want.clone(),
                why: if image.why.is_empty() {
                    "the values its keys need differ from those other images need".into()
                } else {
                    image.why.clone()
                },
            });
            continue;
        }
        let option = image
            .options
            .iter()
            .find(|o| o.iter().all(|(k, v)| chosen.get(k) == Some(v)))
            .expect("a chosen image has a chosen option");
        let host_end = image.want.find('/').unwrap_or(image.want.len());
        let name_end = name_end(&image.want);
        for (marker, v) in option.iter().filter(|(m, _)| !unchanged.contains(m)) {
            let start = image.want.find(v.as_str()).unwrap_or(0);
            let end = start + v.len();
            let part = if start == 0 && end == image.want.len() && name_end < end {
                "the whole reference"
            } else if start == 0 && end >= name_end {
                "host, path and name"
            } else if start == 0 && end <= host_end {
                "the host"
            } else if start == 0 {
                "host and path"
            } else if end >= name_end {
                "the path and name"
            } else {
                "part of the path"
            };
            let e = uses.entry(markers.keys[marker].0.clone()).or_default();
            e.0 += 1;
            e.1.insert(part);
        }
    }
    for (path, (n, parts)) in uses {
        let key = path.join(".");
        let value = path
            .iter()
            .try_fold(&values, |v, k| v.get(k))
            .cloned()
            .unwrap_or(Value::Null);
        learned.evidence.push(format!(
            "{key} = {value}: it replaces {} in {n} image{} (learned by render)",
            parts.into_iter().collect::<Vec<_>>().join(" / "),
            if n == 1 { "" } else { "s" }
        ));
    }
    learned.values = values;
    // The other solutions, as values (a key at the chart's own value or the release's left
    // out, as above).
    for other in others {
        let mut v = json!({});
        for (marker, value) in &other {
            let (path, _) = &markers.keys[marker];
            let same = value == LEFT_AS_IS
                || [defaults, already].iter().any(|base| {
                    path.iter()
                        .try_fold(*base, |d, k| d.get(k))
                        .and_then(Value::as_str)
                        == Some(value.as_str())
                });
            if !same {
                wallaroo_engine::json::set_path(&mut v, path, json!(value));
            }
        }
        if v != learned.values && !learned.alternatives.contains(&v) {
            learned.alternatives.push(v);
        }
    }
    learned
}

#[cfg(test)]
mod tests;
