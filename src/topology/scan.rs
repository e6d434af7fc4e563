//! A first pass over the YAML event stream that finds what a YAML loader hides: a key given
//! twice in one mapping (loaders keep the last one, so a setting silently vanishes) and
//! anchors or aliases (a few hundred bytes of nested aliases expand to gigabytes: the
//! "billion laughs"). It allocates nothing per alias, so hostile input stays cheap.

use crate::diag::{Diagnostics, Severity};
use saphyr_parser::{Event, Parser, Span};
use std::collections::BTreeMap;

/// One open collection.
enum Frame {
    /// A mapping: its path, the keys seen with their lines, and whether a key comes next.
    Map { path: String, keys: BTreeMap<String, usize>, key_next: bool, last_key: Option<String> },
    /// A sequence: its path and the index of the next item.
    Seq { path: String, next: usize },
}

fn at(span: &Span) -> (usize, usize) {
    (span.start.line(), span.start.col() + 1)
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

/// Reports duplicate keys, anchors and aliases. Returns false when the document must not be
/// loaded (it holds an alias). Syntax errors are left to the loader, which reports them.
pub(super) fn scan(text: &str, d: &mut Diagnostics) -> bool {
    let mut stack: Vec<Frame> = Vec::new();
    // Only the first alias and the first anchor are reported; the rest are counted.
    let (mut aliases, mut anchors) = (0usize, 0usize);
    for item in Parser::new_from_str(text) {
        let Ok((event, span)) = item else { break };
        // The path of the node this event starts (for collections and scalars).
        let path = node_path(&mut stack, &event, &span, d);
        match event {
            Event::Alias(_) => {
                aliases += 1;
                if aliases > 1 {
                    continue;
                }
                d.push(
                    Severity::Error,
                    &path,
                    Some(at(&span)),
                    "YAML aliases (`*name`) are not allowed in a topology",
                    "write the value out in full; etcdpack refuses aliases so that a small file cannot expand without bound",
                );
            }
            Event::Scalar(_, _, anchor, _)
            | Event::SequenceStart(anchor, _)
            | Event::MappingStart(anchor, _)
                if anchor > 0 =>
            {
                anchors += 1;
                if anchors > 1 {
                    // Still a collection: fall through to track it.
                } else {
                    d.push(
                        Severity::Error,
                        &path,
                        Some(at(&span)),
                        "YAML anchors (`&name`) are not allowed in a topology",
                        "remove the anchor and write every value where it is used",
                    );
                }
            }
            _ => {}
        }
        match event {
            Event::MappingStart(..) => {
                stack.push(Frame::Map { path, keys: BTreeMap::new(), key_next: true, last_key: None })
            }
            Event::SequenceStart(..) => stack.push(Frame::Seq { path, next: 0 }),
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
            }
            _ => {}
        }
    }
    for (count, what) in [(aliases, "aliases"), (anchors, "anchors")] {
        let first = d.problems.iter_mut().rev().find(|p| p.message.starts_with(&format!("YAML {what}")));
        if let Some(p) = first.filter(|_| count > 1) {
            p.message.push_str(&format!(" ({count} in the file)"));
        }
    }
    aliases == 0
}

/// Works out the YAML path of the node `event` starts, recording and checking mapping keys.
fn node_path(stack: &mut [Frame], event: &Event<'_>, span: &Span, d: &mut Diagnostics) -> String {
    let starts_node = matches!(
        event,
        Event::Scalar(..) | Event::Alias(_) | Event::SequenceStart(..) | Event::MappingStart(..)
    );
    let Some(top) = stack.last_mut() else { return String::new() };
    if !starts_node {
        return match top {
            Frame::Map { path, .. } | Frame::Seq { path, .. } => path.clone(),
        };
    }
    match top {
        Frame::Seq { path, next } => {
            let p = format!("{path}[{next}]");
            *next += 1;
            p
        }
        Frame::Map { path, keys, key_next, last_key } => {
            if *key_next {
                *key_next = false;
                let key = match event {
                    Event::Scalar(text, ..) => text.to_string(),
                    _ => {
                        *last_key = None;
                        return path.clone();
                    }
                };
                let key_path = child(path, &key);
                let (line, col) = at(span);
                if let Some(first) = keys.get(&key) {
                    d.push(
                        Severity::Error,
                        &key_path,
                        Some((line, col)),
                        format!("`{key}` is given twice (first at line {first})"),
                        "keep one of the two; YAML loaders silently keep only the last",
                    );
                } else {
                    keys.insert(key.clone(), line);
                }
                *last_key = Some(key);
                key_path
            } else {
                *key_next = true;
                match last_key.take() {
                    Some(k) => child(path, &k),
                    None => path.clone(),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> (bool, Vec<String>) {
        let mut d = Diagnostics::new("t.yaml");
        let ok = scan(text, &mut d);
        (
            ok,
            d.problems
                .iter()
                .map(|p| format!("{}:{} {} {}", p.line.unwrap(), p.path, p.message, ""))
                .collect(),
        )
    }

    #[test]
    fn duplicate_keys_name_both_lines() {
        let (ok, p) =
            problems("cluster: a\nmembers:\n  - {name: x, address: 1.2.3.4, address: 1.2.3.5}\ncluster: b\n");
        assert!(ok);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].starts_with("3:members[0].address `address` is given twice (first at line 3)"), "{p:?}");
        assert!(p[1].starts_with("4:cluster `cluster` is given twice (first at line 1)"), "{p:?}");
    }

    #[test]
    fn nested_mappings_keep_their_own_keys() {
        let (_, p) = problems("etcd:\n  dataDir: /a\npki:\n  dataDir: /b\netcd:\n  x: 1\n");
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("5:etcd `etcd` is given twice (first at line 1)"));
    }

    #[test]
    fn aliases_and_anchors_are_refused_without_expanding() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x]\n");
        for i in 1..30 {
            let prev = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
            ));
        }
        let (ok, p) = problems(&text);
        assert!(!ok);
        assert!(p.iter().any(|p| p.contains("aliases")));
        assert!(p.iter().any(|p| p.contains("anchors")));
    }
}
