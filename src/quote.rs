//! Quoting for where a value lands: a YAML scalar as go-yaml writes it, a word for bash, an
//! argument of a systemd `ExecStart=` line. Every topology value that reaches a rendered
//! file goes through one of these (or is refused by validation).

/// A YAML scalar as go-yaml v2 (sigs.k8s.io/yaml) would write a string: plain when that
/// reads back as the same string, double-quoted when plain would read as another type,
/// single-quoted when plain is not allowed.
pub fn yaml_scalar(s: &str) -> String {
    if resolves_to_non_string(s) {
        return format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    }
    if plain_allowed(s) {
        return s.to_string();
    }
    if s.chars().any(|c| c.is_control()) {
        return serde_json::to_string(s).expect("JSON string");
    }
    format!("'{}'", s.replace('\'', "''"))
}

fn resolves_to_non_string(s: &str) -> bool {
    const WORDS: [&str; 22] = [
        "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "true", "True", "TRUE", "false", "False",
        "FALSE", "on", "On", "ON", "off", "Off", "OFF",
    ];
    if s.is_empty() || WORDS.contains(&s) || ["~", "null", "Null", "NULL"].contains(&s) {
        return true;
    }
    let t = s.strip_prefix(['+', '-']).unwrap_or(s);
    let t = t.replace('_', "");
    if [".inf", ".Inf", ".INF", ".nan", ".NaN", ".NAN"].contains(&t.as_str()) {
        return true;
    }
    let is_num = !t.is_empty()
        && (t.parse::<f64>().is_ok()
            || t.strip_prefix("0x")
                .is_some_and(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit()))
            || t.strip_prefix("0b")
                .is_some_and(|b| !b.is_empty() && b.chars().all(|c| c == '0' || c == '1'))
            || (t.contains(':')
                && t.split(':').all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit() || c == '.'))));
    let is_date = {
        let b = s.as_bytes();
        b.len() >= 8 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' && b[5].is_ascii_digit()
    };
    is_num || is_date
}

fn plain_allowed(s: &str) -> bool {
    let first = s.chars().next().unwrap_or(' ');
    let second_blank = s.chars().nth(1).is_none_or(|c| c == ' ');
    if "[]{},#&*!|>'\"%@`".contains(first) || (matches!(first, '-' | '?' | ':') && second_blank) {
        return false;
    }
    if s.starts_with(' ') || s.ends_with(' ') || s.ends_with(':') {
        return false;
    }
    !(s.contains(": ") || s.contains(" #") || s.chars().any(|c| c.is_control() || c == '\u{feff}'))
}

/// A word for bash, single-quoted unless it is plainly safe.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-:=@+,".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// One argument of a systemd `ExecStart=` line, read back by systemd as `arg`: `%` and `$`
/// doubled (no specifiers, no variables), backslashes and quotes escaped, and double quotes
/// around anything with a space or a quote.
pub fn systemd_arg(arg: &str) -> String {
    let mut out = String::new();
    for c in arg.chars() {
        match c {
            '%' => out.push_str("%%"),
            '$' => out.push_str("$$"),
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            // Every other control character as an escape systemd reads back (the topology
            // refuses them; this keeps a unit whole whatever reaches it).
            c if c.is_control() => {
                let mut utf8 = [0u8; 4];
                for b in c.encode_utf8(&mut utf8).bytes() {
                    out.push_str(&format!("\\x{b:02x}"));
                }
            }
            c => out.push(c),
        }
    }
    if arg.is_empty() || arg.contains([' ', '"', '\'', ';']) || arg.chars().any(char::is_control) {
        format!("\"{out}\"")
    } else {
        out
    }
}

/// Go's `time.Duration` text for whole seconds (`8760h0m0s`).
pub fn go_duration(secs: u64) -> String {
    format!("{}h{}m{}s", secs / 3600, secs % 3600 / 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_like_go() {
        assert_eq!(go_duration(8760 * 3600), "8760h0m0s");
        assert_eq!(go_duration(90 * 60 + 5), "1h30m5s");
    }

    #[test]
    fn yaml_quoting_matches_go_yaml() {
        assert_eq!(yaml_scalar("new"), "new");
        assert_eq!(
            yaml_scalar("--listen-client-urls=https://[fd00::6]:2379"),
            "--listen-client-urls=https://[fd00::6]:2379"
        );
        assert_eq!(yaml_scalar("::1"), "::1");
        assert_eq!(
            yaml_scalar("/health?exclude=NOSPACE&serializable=true"),
            "/health?exclude=NOSPACE&serializable=true"
        );
        assert_eq!(yaml_scalar("20000"), "\"20000\"");
        assert_eq!(yaml_scalar("true"), "\"true\"");
        assert_eq!(yaml_scalar("yes"), "\"yes\"");
        assert_eq!(yaml_scalar(""), "\"\"");
        assert_eq!(yaml_scalar("1.5"), "\"1.5\"");
        assert_eq!(yaml_scalar("a: b"), "'a: b'");
        assert_eq!(yaml_scalar("*x"), "'*x'");
        assert_eq!(yaml_scalar("it's # here"), "'it''s # here'");
        assert_eq!(yaml_scalar("5s"), "5s");
    }

    #[test]
    fn systemd_quoting_keeps_each_argument_whole_and_literal() {
        assert_eq!(systemd_arg("--name=infra0"), "--name=infra0");
        assert_eq!(
            systemd_arg("--initial-cluster=a=https://[fd00::6]:2380,b=https://10.0.0.7:2380"),
            "--initial-cluster=a=https://[fd00::6]:2380,b=https://10.0.0.7:2380"
        );
        // Specifiers and variables would be expanded by systemd: doubled, they are not.
        assert_eq!(systemd_arg("--x=100%"), "--x=100%%");
        assert_eq!(systemd_arg("--x=$HOME"), "--x=$$HOME");
        assert_eq!(systemd_arg("--x=a b"), "\"--x=a b\"");
        assert_eq!(systemd_arg("--x=say \"hi\""), "\"--x=say \\\"hi\\\"\"");
        assert_eq!(systemd_arg("--x=a\\b"), "--x=a\\\\b");
        // A CR ends a line for systemd: escaped, it stays inside the argument; so does NUL.
        assert_eq!(systemd_arg("info\rUser=root"), "\"info\\rUser=root\"");
        assert_eq!(systemd_arg("a\u{0}b\u{85}"), "\"a\\x00b\\xc2\\x85\"");
        assert_eq!(systemd_arg(""), "\"\"");
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("infra0"), "infra0");
        assert_eq!(shell_quote("/var/lib/etcd"), "/var/lib/etcd");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }
}
