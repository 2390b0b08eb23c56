//! Resource addresses: `image["wallaroo/conductor-wallsvc"]`, `nodepool.general.node["node-1"]`,
//! `namespace.wallaroo`, `secret.wallaroo/cust-cert-secret`, `output.api_lb_ip`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One dot-separated step of an address: a name with an optional `["key"]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Segment {
    pub name: String,
    pub key: Option<String>,
}

/// A stable, ordered address of a managed thing. The first segment's name is the kind
/// (`image`, `nodepool`, `helm_release`, ...).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address(Vec<Segment>);

/// Why a string is not an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not a resource address: {reason}")]
pub struct AddressError {
    pub input: String,
    pub reason: String,
}

impl Address {
    /// `kind.name`, e.g. `namespace.wallaroo`.
    pub fn named(kind: &str, name: &str) -> Address {
        Address(vec![Segment::plain(kind), Segment::plain(name)])
    }

    /// `kind["key"]`, e.g. `image["wallaroo/conductor-wallsvc"]`.
    pub fn keyed(kind: &str, key: &str) -> Address {
        Address(vec![Segment {
            name: kind.into(),
            key: Some(key.into()),
        }])
    }

    /// This address with one more segment.
    pub fn child(&self, name: &str, key: Option<&str>) -> Address {
        let mut segs = self.0.clone();
        segs.push(Segment {
            name: name.into(),
            key: key.map(String::from),
        });
        Address(segs)
    }

    pub fn segments(&self) -> &[Segment] {
        &self.0
    }

    /// The first segment's name: the resource's kind of address.
    pub fn kind(&self) -> &str {
        &self.0[0].name
    }

    /// Whether `self` is `other` or contains it (`nodepool.general` contains
    /// `nodepool.general.node["n1"]`). Used by `--target` and `state rm`.
    pub fn contains(&self, other: &Address) -> bool {
        other.0.len() >= self.0.len()
            && self.0.iter().zip(&other.0).enumerate().all(|(i, (a, b))| {
                a.name == b.name && (a.key == b.key || (i + 1 == self.0.len() && a.key.is_none()))
            })
    }
}

impl Segment {
    fn plain(name: &str) -> Segment {
        Segment {
            name: name.into(),
            key: None,
        }
    }
}

fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '/' | ':')
}

impl FromStr for Address {
    type Err = AddressError;

    fn from_str(input: &str) -> Result<Address, AddressError> {
        let fail = |reason: &str| AddressError {
            input: input.into(),
            reason: reason.into(),
        };
        let mut segs = Vec::new();
        let mut rest = input;
        loop {
            let end = rest.find(|c: char| !name_char(c)).unwrap_or(rest.len());
            if end == 0 {
                return Err(fail("expected a name (letters, digits, `_-/:`)"));
            }
            let name = rest[..end].to_string();
            rest = &rest[end..];
            let mut key = None;
            if let Some(after) = rest.strip_prefix("[\"") {
                let mut value = String::new();
                let mut chars = after.char_indices();
                let close = loop {
                    match chars.next() {
                        Some((_, '\\')) => match chars.next() {
                            Some((_, c)) => value.push(c),
                            None => return Err(fail("unfinished escape in a key")),
                        },
                        Some((i, '"')) => break i,
                        Some((_, c)) => value.push(c),
                        None => return Err(fail("a key is missing its closing `\"]`")),
                    }
                };
                rest = after[close + 1..]
                    .strip_prefix(']')
                    .ok_or_else(|| fail("a key must end with `\"]`"))?;
                key = Some(value);
            }
            segs.push(Segment { name, key });
            if rest.is_empty() {
                break;
            }
            rest = rest
                .strip_prefix('.')
                .ok_or_else(|| fail("segments are joined by `.`"))?;
        }
        Ok(Address(segs))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            f.write_str(&s.name)?;
            if let Some(k) = &s.key {
                write!(f, "[\"{}\"]", k.replace('\\', "\\\\").replace('"', "\\\""))?;
            }
        }
        Ok(())
    }
}

impl Serialize for Address {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for Address {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Address".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A resource address, e.g. image[\"wallaroo/conductor-wallsvc\"] or namespace.wallaroo"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_example_address_round_trips() {
        for a in [
            "image[\"wallaroo/conductor-wallsvc\"]",
            "nodepool.pipelines-x86.node[\"node-3\"]",
            "namespace.wallaroo",
            "secret.wallaroo/cust-cert-secret",
            "helm_release.wallaroo",
            "daemonset.kube-system/nvidia-device-plugin",
            "user[\"alice@example.com\"]",
            "output.api_lb_ip",
            "file[\"a \\\"quoted\\\" name\"]",
        ] {
            let parsed: Address = a.parse().unwrap();
            assert_eq!(parsed.to_string(), a);
        }
    }

    #[test]
    fn malformed_addresses_are_refused() {
        for a in ["", "image[\"x", "image[x]", ".a", "a..b", "a b"] {
            assert!(a.parse::<Address>().is_err(), "{a}");
        }
    }

    #[test]
    fn containment_and_order() {
        let pool: Address = "nodepool.general".parse().unwrap();
        let node: Address = "nodepool.general.node[\"n1\"]".parse().unwrap();
        let other: Address = "nodepool.persistent.node[\"n1\"]".parse().unwrap();
        assert!(pool.contains(&node) && !pool.contains(&other) && !node.contains(&pool));
        let image: Address = "image".parse().unwrap();
        assert!(image.contains(&Address::keyed("image", "x")));
        assert!(Address::named("a", "b") < Address::named("b", "a"));
    }
}
