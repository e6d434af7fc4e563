//! The commented example topology that `etcdpack init` prints or writes, its comments naming
//! the file it is written to, so that the commands they show can be copied as they stand.

use crate::quote::shell_quote;

/// The example as shipped in `examples/etcd-topology.yaml`.
pub const EXAMPLE: &str = include_str!("../examples/etcd-topology.yaml");

/// The file name the example's comments use.
const SHIPPED_NAME: &str = "etcd-topology.yaml";

/// The example for `file` (as the user typed it): every command in its comments names `file`,
/// quoted for the shell where it needs quoting. `None` for a name that cannot stand in a
/// YAML comment (a control character would end the comment and begin YAML of its own).
pub fn for_file(file: &str) -> Option<String> {
    if file.is_empty() || file.chars().any(|c| c.is_control() || c == '\u{feff}') {
        return None;
    }
    let word = shell_quote(file);
    Some(
        EXAMPLE
            .lines()
            .map(|line| match line.strip_prefix('#') {
                Some(comment) => format!("#{}\n", comment.replace(SHIPPED_NAME, &word)),
                None => format!("{line}\n"),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_comments_name_the_file_written() {
        let text = for_file("site/etcd.yaml").unwrap();
        assert!(text.contains("# Build with: etcdpack build site/etcd.yaml  (bundles land in ./dist)"));
        assert!(!text.contains(SHIPPED_NAME));
        // Only comments change: the YAML is the example's.
        let yaml = |t: &str| t.lines().filter(|l| !l.starts_with('#')).collect::<Vec<_>>().join("\n");
        assert_eq!(yaml(&text), yaml(EXAMPLE));
        assert_eq!(for_file(SHIPPED_NAME).unwrap(), EXAMPLE);
    }

    #[test]
    fn a_name_is_quoted_for_the_shell_or_refused() {
        let text = for_file("my etcd's.yaml").unwrap();
        assert!(text.contains("etcdpack build 'my etcd'\\''s.yaml'"), "{text}");
        assert_eq!(for_file("a\nkubernetesVersion: v1.29.0.yaml"), None);
        assert_eq!(for_file("a\r.yaml"), None);
        assert_eq!(for_file(""), None);
    }
}
