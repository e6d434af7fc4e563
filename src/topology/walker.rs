//! Walking a YAML tree that knows where every node stands: typed reads that report a
//! problem (with YAML path, line and column) instead of failing, so that one pass over the
//! file finds everything wrong with it.

use crate::diag::Severity;
use saphyr::{MarkedYamlOwned, ScalarOwned, YamlDataOwned};
use std::collections::BTreeMap;

use super::syntax::parse_duration;
use crate::diag::Diagnostics;

/// Where a node starts. The YAML parser gives block collections no position of their own,
/// so a collection is placed at its first child.
pub(super) fn pos_of(node: &MarkedYamlOwned) -> Option<(usize, usize)> {
    if node.span.start.line() > 0 {
        return Some((node.span.start.line(), node.span.start.col() + 1));
    }
    match &node.data {
        YamlDataOwned::Mapping(map) => map.keys().next().and_then(pos_of),
        YamlDataOwned::Sequence(items) => items.first().and_then(pos_of),
        _ => None,
    }
}

pub(super) fn pos(node: &MarkedYamlOwned) -> (usize, usize) {
    pos_of(node).unwrap_or((1, 1))
}

pub(super) fn kind(node: &MarkedYamlOwned) -> &'static str {
    match &node.data {
        YamlDataOwned::Value(ScalarOwned::Null) => "null",
        YamlDataOwned::Value(ScalarOwned::Boolean(_)) => "a boolean",
        YamlDataOwned::Value(ScalarOwned::Integer(_)) => "a number",
        YamlDataOwned::Value(ScalarOwned::FloatingPoint(_)) => "a number",
        YamlDataOwned::Value(ScalarOwned::String(_)) => "a string",
        YamlDataOwned::Sequence(_) => "a list",
        YamlDataOwned::Mapping(_) => "a mapping",
        _ => "an unsupported YAML node",
    }
}

pub(super) struct Walker {
    pub(super) d: Diagnostics,
    /// Position of the key that introduced each path, for nodes without a position.
    pub(super) key_pos: BTreeMap<String, (usize, usize)>,
}

pub(super) type Fields<'a> = BTreeMap<String, (&'a MarkedYamlOwned, &'a MarkedYamlOwned)>;

impl Walker {
    /// Records a problem at `node` (or at the key that introduced `path`).
    fn report(&mut self, severity: Severity, path: &str, node: &MarkedYamlOwned, msg: String, help: String) {
        let at = self.locate(path, node);
        self.d.push(severity, path, Some(at), msg, help);
    }

    pub(super) fn err(
        &mut self,
        path: &str,
        node: &MarkedYamlOwned,
        msg: impl Into<String>,
        help: impl Into<String>,
    ) {
        self.report(Severity::Error, path, node, msg.into(), help.into());
    }

    pub(super) fn warn(
        &mut self,
        path: &str,
        node: &MarkedYamlOwned,
        msg: impl Into<String>,
        help: impl Into<String>,
    ) {
        self.report(Severity::Warning, path, node, msg.into(), help.into());
    }

    /// The node's own position, else that of the key that introduced it (or an ancestor's).
    pub(super) fn locate(&self, path: &str, node: &MarkedYamlOwned) -> (usize, usize) {
        if let Some(p) = pos_of(node) {
            return p;
        }
        let mut p = path;
        loop {
            if let Some(at) = self.key_pos.get(p) {
                return *at;
            }
            match p.rfind(['.', '[']) {
                Some(i) => p = &p[..i],
                None => return (1, 1),
            }
        }
    }

    /// A mapping's fields, reporting unknown keys (with a suggestion) and a wrong node kind.
    pub(super) fn mapping<'a>(
        &mut self,
        path: &str,
        node: &'a MarkedYamlOwned,
        allowed: &[&str],
    ) -> Option<Fields<'a>> {
        let YamlDataOwned::Mapping(map) = &node.data else {
            let shown = if path.is_empty() { "the document" } else { path };
            self.err(
                path,
                node,
                format!("expected a mapping, found {}", kind(node)),
                format!("write {shown} as `key: value` lines"),
            );
            return None;
        };
        let mut out = BTreeMap::new();
        for (k, v) in map {
            let YamlDataOwned::Value(ScalarOwned::String(key)) = &k.data else {
                self.err(
                    path,
                    k,
                    format!("keys must be strings, found {}", kind(k)),
                    "quote the key or rename it",
                );
                continue;
            };
            let child = join(path, key);
            if let Some(at) = pos_of(k) {
                self.key_pos.insert(child.clone(), at);
            }
            if !allowed.contains(&key.as_str()) {
                let help = match closest(key, allowed) {
                    Some(s) => format!("did you mean `{s}`? known keys here: {}", allowed.join(", ")),
                    None => format!("remove it; known keys here: {}", allowed.join(", ")),
                };
                self.err(&child, k, format!("unknown key `{key}`"), help);
                continue;
            }
            out.insert(key.clone(), (k, v));
        }
        Some(out)
    }

    pub(super) fn required<'a>(
        &mut self,
        path: &str,
        parent: &MarkedYamlOwned,
        fields: &Fields<'a>,
        key: &str,
        example: &str,
    ) -> Option<&'a MarkedYamlOwned> {
        match fields.get(key) {
            Some((_, v)) => Some(v),
            None => {
                self.err(
                    &join(path, key),
                    parent,
                    format!("missing required key `{key}`"),
                    format!("add `{key}: {example}`"),
                );
                None
            }
        }
    }

    pub(super) fn string(&mut self, path: &str, node: &MarkedYamlOwned) -> Option<String> {
        match &node.data {
            YamlDataOwned::Value(ScalarOwned::String(s)) => self.printable(path, node, s),
            YamlDataOwned::Sequence(_) | YamlDataOwned::Mapping(_) => {
                let key = path.rsplit(['.', ']']).next().unwrap_or(path);
                self.err(
                    path,
                    node,
                    format!("expected a single value, found {}", kind(node)),
                    format!("write one value after `{key}:`, such as `{key}: \"...\"`"),
                );
                None
            }
            _ => {
                self.err(path, node, format!("expected a string, found {}", kind(node)), "quote the value");
                None
            }
        }
    }

    /// An optional string field `section.key` that must satisfy `valid`; an invalid value is
    /// reported as "`value` is not <what>" and clears `ok`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn checked(
        &mut self,
        fields: &Fields<'_>,
        section: &str,
        key: &str,
        valid: fn(&str) -> bool,
        what: &str,
        help: &str,
        ok: &mut bool,
    ) -> Option<String> {
        let (_, node) = fields.get(key)?;
        let path = join(section, key);
        let value = self.string(&path, node);
        match value {
            Some(v) if valid(&v) => Some(v),
            Some(v) => {
                self.err(&path, node, format!("`{v}` is not {what}"), help);
                *ok = false;
                None
            }
            None => {
                *ok = false;
                None
            }
        }
    }

    /// A scalar as text (numbers and booleans too, as extraArgs values are strings).
    pub(super) fn scalar_text(&mut self, path: &str, node: &MarkedYamlOwned) -> Option<String> {
        match &node.data {
            YamlDataOwned::Value(ScalarOwned::String(s)) => self.printable(path, node, s),
            YamlDataOwned::Value(ScalarOwned::Integer(i)) => Some(i.to_string()),
            YamlDataOwned::Value(ScalarOwned::Boolean(b)) => Some(b.to_string()),
            YamlDataOwned::Value(ScalarOwned::FloatingPoint(f)) => Some(f.to_string()),
            YamlDataOwned::Value(ScalarOwned::Null) => Some(String::new()),
            _ => {
                self.err(
                    path,
                    node,
                    format!("expected a value, found {}", kind(node)),
                    "write a single value",
                );
                None
            }
        }
    }

    /// `s`, unless it holds a control character (CR, NUL, a tab, ...) or a Unicode line
    /// separator: every value lands in YAML, shell or a systemd unit, where such a character
    /// ends a line or a word and makes the rest say something else. The value is shown
    /// escaped, so that the message itself prints nothing hidden.
    fn printable(&mut self, path: &str, node: &MarkedYamlOwned, s: &str) -> Option<String> {
        match s.chars().find(|c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}')) {
            None => Some(s.to_string()),
            Some(c) => {
                self.err(
                    path,
                    node,
                    format!(
                        "{s:?} holds U+{:04X}, {}",
                        c as u32,
                        if c.is_control() { "a control character" } else { "an invisible line separator" }
                    ),
                    "write the value on one line, without control characters: etcdpack writes it into YAML, shell scripts and systemd units, where such a character ends a line or a word",
                );
                None
            }
        }
    }

    pub(super) fn boolean(&mut self, path: &str, node: &MarkedYamlOwned) -> Option<bool> {
        match &node.data {
            YamlDataOwned::Value(ScalarOwned::Boolean(b)) => Some(*b),
            _ => {
                self.err(
                    path,
                    node,
                    format!("expected true or false, found {}", kind(node)),
                    "write `true` or `false`",
                );
                None
            }
        }
    }

    pub(super) fn port(&mut self, path: &str, node: &MarkedYamlOwned) -> Option<u16> {
        match &node.data {
            YamlDataOwned::Value(ScalarOwned::Integer(i)) if (1..=65535).contains(i) => Some(*i as u16),
            YamlDataOwned::Value(ScalarOwned::Integer(i)) => {
                self.err(path, node, format!("port {i} is out of range"), "use a port from 1 to 65535");
                None
            }
            _ => {
                self.err(
                    path,
                    node,
                    format!("expected a port number, found {}", kind(node)),
                    "write a number from 1 to 65535",
                );
                None
            }
        }
    }

    pub(super) fn list<'a>(
        &mut self,
        path: &str,
        node: &'a MarkedYamlOwned,
    ) -> Option<&'a [MarkedYamlOwned]> {
        match &node.data {
            YamlDataOwned::Sequence(items) => Some(items),
            _ => {
                self.err(
                    path,
                    node,
                    format!("expected a list, found {}", kind(node)),
                    "write one `- item` per line",
                );
                None
            }
        }
    }

    pub(super) fn duration(&mut self, path: &str, node: &MarkedYamlOwned) -> Option<u64> {
        let text = self.string(path, node)?;
        match parse_duration(&text) {
            Some(0) => {
                self.err(
                    path,
                    node,
                    format!("duration `{text}` is not positive"),
                    "use a positive duration such as 8760h",
                );
                None
            }
            Some(s) if s > super::MAX_VALIDITY => {
                self.err(
                    path,
                    node,
                    format!("duration `{text}` is longer than 100 years"),
                    "use at most 876000h (100 years); kubeadm's defaults are 8760h for leaves and 87600h for the CA",
                );
                None
            }
            Some(s) => Some(s),
            None => {
                self.err(
                    path,
                    node,
                    format!("`{text}` is not a duration"),
                    "write a duration such as 8760h, 90m, 365d or 10y",
                );
                None
            }
        }
    }
}

pub(super) fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

pub(super) fn closest<'a>(word: &str, options: &[&'a str]) -> Option<&'a str> {
    let lower = word.to_ascii_lowercase();
    options
        .iter()
        .map(|o| (edit_distance(&lower, &o.to_ascii_lowercase()), *o))
        .filter(|(d, o)| *d <= 2.max(o.len() / 4))
        .min()
        .map(|(_, o)| o)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        assert_eq!(closest("adress", &["name", "address", "certSANs"]), Some("address"));
        assert_eq!(closest("zzzzzz", &["name", "address"]), None);
    }
}
