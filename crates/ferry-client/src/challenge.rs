//! `WWW-Authenticate` challenges (RFC 9110 §11.6.1):
//! `Bearer realm="https://auth/token",service="registry",scope="repository:a:pull"`
//! or `Basic realm="..."`. Hand-written because the grammar is ten lines
//! and the crates that parse it pull in an older HTTP stack.

use std::collections::HashMap;

/// One challenge: the scheme (lowercased) and its parameters (names
/// lowercased, values unquoted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: String,
    pub params: HashMap<String, String>,
}

impl Challenge {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }
}

/// Parses every challenge of a header value; garbage yields what could be
/// understood before it.
pub fn parse(value: &str) -> Vec<Challenge> {
    let mut p = Parser {
        s: value.as_bytes(),
        i: 0,
    };
    let mut out = Vec::new();
    loop {
        p.skip(|b| b == b' ' || b == b'\t' || b == b',');
        let scheme = p.token();
        if scheme.is_empty() {
            break;
        }
        let mut params = HashMap::new();
        loop {
            p.skip(|b| b == b' ' || b == b'\t');
            let save = p.i;
            let name = p.token();
            p.skip(|b| b == b' ' || b == b'\t');
            if name.is_empty() || !p.eat(b'=') {
                p.i = save;
                break;
            }
            p.skip(|b| b == b' ' || b == b'\t');
            let value = if p.peek() == Some(b'"') {
                p.quoted()
            } else {
                p.token()
            };
            params.insert(name.to_ascii_lowercase(), value);
            p.skip(|b| b == b' ' || b == b'\t');
            if !p.eat(b',') {
                break;
            }
        }
        out.push(Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params,
        });
    }
    out
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn skip(&mut self, pred: impl Fn(u8) -> bool) {
        while self.peek().is_some_and(&pred) {
            self.i += 1;
        }
    }

    /// RFC 9110 `token` (tchar+), plus `/` so that unquoted URLs some
    /// servers send still parse.
    fn token(&mut self) -> String {
        let start = self.i;
        self.skip(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/:".contains(&b));
        String::from_utf8_lossy(&self.s[start..self.i]).into_owned()
    }

    /// A quoted-string, with `\` escapes.
    fn quoted(&mut self) -> String {
        let mut out = Vec::new();
        self.i += 1; // opening quote
        while let Some(b) = self.peek() {
            self.i += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    if let Some(next) = self.peek() {
                        out.push(next);
                        self.i += 1;
                    }
                }
                _ => out.push(b),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_basic() {
        let c = parse(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull,push""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c[0].param("service"), Some("registry.docker.io"));
        assert_eq!(
            c[0].param("scope"),
            Some("repository:library/nginx:pull,push")
        );

        let c = parse(r#"Basic realm="ECR \"quoted\"", Bearer realm=x , error=insufficient_scope"#);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].scheme, "basic");
        assert_eq!(c[0].param("realm"), Some(r#"ECR "quoted""#));
        assert_eq!(c[1].param("realm"), Some("x"));
        assert_eq!(c[1].param("error"), Some("insufficient_scope"));
    }

    #[test]
    fn garbage_does_not_panic() {
        for s in [
            "",
            "   ",
            "Bearer",
            "Bearer realm=",
            "Bearer realm=\"unterminated",
            "=,=,\"",
            "Basic =",
        ] {
            let _ = parse(s);
        }
        assert_eq!(parse("Bearer")[0].scheme, "bearer");
    }
}
