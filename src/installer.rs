//! install.sh is assembled, not templated, wherever it can be: the bundle's rendered part
//! (its data and the steps of its role and runtime) followed by the plain shell files of
//! `installer/`, each shellchecked and tested with bats as itself, then the call of `main`.

/// Functions every installer shares: messages, the bundle folder, the lock, verification
/// against SHA256SUMS, health and quorum arithmetic.
pub const COMMON: &str = include_str!("../installer/common.sh");
/// Functions of installers that install files (all but leave bundles): writing a file with
/// its mode and owner, a command or its words with `--dry-run`, restoring a backup.
pub const FILES: &str = include_str!("../installer/files.sh");
/// Functions of installers that change the members (join and leave bundles): etcd's v3 JSON
/// gateway through curl.
pub const CLUSTER_API: &str = include_str!("../installer/cluster-api.sh");

/// Which shell files an installer carries besides the shared one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parts {
    /// It installs files (not a leave bundle).
    pub files: bool,
    /// It changes the cluster's members (a join or a leave bundle).
    pub cluster_api: bool,
}

/// The whole install.sh: `rendered` (the template's output, which defines `main`), then the
/// shell files `parts` names, then `main "$@"`. Each file's leading `# shellcheck` directives
/// (there for the file on its own) are left out.
pub fn assemble(rendered: &str, parts: Parts) -> String {
    let mut out = String::with_capacity(rendered.len() + COMMON.len() + FILES.len() + CLUSTER_API.len() + 16);
    out.push_str(rendered.trim_end_matches('\n'));
    out.push('\n');
    let files = [(true, COMMON), (parts.files, FILES), (parts.cluster_api, CLUSTER_API)];
    for (_, text) in files.iter().filter(|(wanted, _)| *wanted) {
        out.push('\n');
        out.push_str(body(text));
    }
    out.push_str("\nmain \"$@\"\n");
    out
}

/// A shell file without its leading `# shellcheck` directive lines.
fn body(text: &str) -> &str {
    let mut rest = text;
    while let Some(line_end) = rest.find('\n') {
        if !rest.starts_with("# shellcheck ") {
            break;
        }
        rest = &rest[line_end + 1..];
    }
    rest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_files_are_plain_shell() {
        for text in [COMMON, FILES, CLUSTER_API] {
            assert!(!text.contains("{{"), "no template syntax in a shell file");
            assert!(text.starts_with("# shellcheck shell=bash\n"));
            assert!(!body(text).starts_with("# shellcheck"));
            assert!(text.ends_with("}\n"), "each file ends with a function");
        }
    }

    #[test]
    fn an_installer_is_its_rendered_part_then_its_files_then_main() {
        let leave = assemble("main() { :; }\n\n", Parts { files: false, cluster_api: true });
        assert!(leave.starts_with("main() { :; }\n\n"));
        assert!(leave.contains(body(COMMON)) && leave.contains(body(CLUSTER_API)));
        assert!(!leave.contains("put_file()"), "a leave bundle writes no files");
        assert!(leave.ends_with("}\n\nmain \"$@\"\n"));
        let member = assemble("main() { :; }", Parts { files: true, cluster_api: false });
        assert!(member.contains("put_file()") && !member.contains("api_change()"));
        assert_eq!(member.matches("# shellcheck").count(), 0);
    }
}
