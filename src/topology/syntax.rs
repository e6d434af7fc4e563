//! The formats of single values: durations as kubeadm writes them, DNS-1123 names, image
//! references, absolute paths.

/// Parses kubeadm-style durations (`87600h`, `1h30m`, `90s`) plus `d` and `y` (365d).
pub fn parse_duration(text: &str) -> Option<u64> {
    let mut total: u64 = 0;
    let mut digits = String::new();
    let mut any = false;
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            'y' => 365 * 86400,
            _ => return None,
        };
        let n: u64 = digits.parse().ok()?;
        total = total.checked_add(n.checked_mul(unit)?)?;
        digits.clear();
        any = true;
    }
    (any && digits.is_empty()).then_some(total)
}

/// RFC 1123 subdomain as Kubernetes validates it.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

pub(crate) fn is_wildcard_dns(s: &str) -> bool {
    s.strip_prefix("*.").is_some_and(is_dns1123_subdomain)
}

pub(crate) fn is_image_repository(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-._:/".contains(c))
}

pub(crate) fn is_image_tag(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && !s.starts_with(['.', '-'])
}

pub(crate) fn is_clean_abs_path(s: &str) -> bool {
    s.starts_with('/')
        && s.len() > 1
        && !s.contains("//")
        && !s.split('/').any(|c| c == ".." || c == ".")
        && s.chars().all(|c| c.is_ascii_graphic() && !"\"'\\$`;&|<>*?#{}".contains(c))
}

pub(crate) fn is_safe_file_name(s: &str) -> bool {
    !s.is_empty() && !s.starts_with('.') && s.chars().all(|c| c.is_ascii_alphanumeric() || "._-+".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("87600h"), Some(87600 * 3600));
        assert_eq!(parse_duration("1h30m"), Some(5400));
        assert_eq!(parse_duration("10y"), Some(3650 * 86400));
        assert_eq!(parse_duration("365d"), Some(365 * 86400));
        assert_eq!(parse_duration("0s"), Some(0));
        assert_eq!(parse_duration("12"), None);
        assert_eq!(parse_duration("h"), None);
        assert_eq!(parse_duration("-1h"), None);
        assert_eq!(parse_duration("1.5h"), None);
    }

    #[test]
    fn names() {
        assert!(is_dns1123_subdomain("infra0"));
        assert!(is_dns1123_subdomain("etcd-0.corp.example"));
        assert!(!is_dns1123_subdomain("Infra0"));
        assert!(!is_dns1123_subdomain("-a"));
        assert!(!is_dns1123_subdomain("a..b"));
        assert!(!is_dns1123_subdomain(&"a".repeat(64)));
        assert!(is_wildcard_dns("*.etcd.example"));
    }
}
