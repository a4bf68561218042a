//! Repository names and tags, validated as the distribution-spec
//! ("Pulling manifests") defines them:
//!
//! ```text
//! name: [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*
//! tag:  [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}
//! ```
//!
//! Written by hand rather than with a regex: the grammar is tiny and this is
//! on every request's path.

/// Longest repository name accepted (Distribution's limit, and what
/// clients expect: the spec advises 255 for hostname plus name).
pub const MAX_NAME_LEN: usize = 255;

/// True if `name` is a valid repository name (path components joined by '/').
pub fn is_valid_repository(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME_LEN && name.split('/').all(is_valid_component)
}

/// One path component: alphanumeric runs joined by one '.', one or two
/// '_', or any number of '-'.
pub fn is_valid_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        // A separator run; it must be one of the allowed forms.
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &component[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// True if `tag` is a valid tag.
pub fn is_valid_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    if bytes.is_empty() || bytes.len() > 128 {
        return false;
    }
    let first_ok = bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_';
    first_ok
        && bytes[1..]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories() {
        for ok in [
            "nginx",
            "library/nginx",
            "a/b/c/d/e",
            "my-app",
            "my--app",
            "my_app",
            "my__app",
            "v1.2",
            "0",
        ] {
            assert!(is_valid_repository(ok), "{ok}");
        }
        for bad in [
            "", "Nginx", "a//b", "/a", "a/", "-a", "a-", "a___b", "a..b", "a._b", "a b", "a:b",
            "a/../b", "..", ".",
        ] {
            assert!(!is_valid_repository(bad), "{bad}");
        }
        assert!(!is_valid_repository(&"a".repeat(256)));
    }

    #[test]
    fn tags() {
        for ok in ["latest", "1.27", "_x", "V1-rc.2_3", &"a".repeat(128)] {
            assert!(is_valid_tag(ok), "{ok}");
        }
        for bad in ["", ".x", "-x", "a:b", "a/b", &"a".repeat(129)] {
            assert!(!is_valid_tag(bad), "{bad}");
        }
    }
}
