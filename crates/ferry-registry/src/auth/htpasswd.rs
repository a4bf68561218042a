//! Users from an Apache htpasswd file, bcrypt hashes only (`htpasswd -B`),
//! as CNCF Distribution accepts. Successful checks are cached for a few
//! minutes: bcrypt is deliberately slow (tens of ms at cost 10), and
//! Basic auth sends the password with every request.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ferry_oci::Digest;

const CACHE_TTL: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum HtpasswdError {
    #[error("cannot read htpasswd file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "{path}:{line}: user {user:?} does not have a bcrypt hash; create entries with `htpasswd -B`"
    )]
    NotBcrypt {
        path: String,
        line: usize,
        user: String,
    },
    #[error("{path}:{line}: expected `user:hash`")]
    Malformed { path: String, line: usize },
}

pub struct Htpasswd {
    users: HashMap<String, String>,
    /// user -> (sha256 of the password that verified, when)
    verified: Mutex<HashMap<String, (Digest, Instant)>>,
}

impl Htpasswd {
    pub fn load(path: &Path) -> Result<Htpasswd, HtpasswdError> {
        let text = std::fs::read_to_string(path).map_err(|source| HtpasswdError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    pub fn parse(text: &str, origin: &str) -> Result<Htpasswd, HtpasswdError> {
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((user, hash)) = line.split_once(':') else {
                return Err(HtpasswdError::Malformed {
                    path: origin.to_string(),
                    line: i + 1,
                });
            };
            if !["$2y$", "$2a$", "$2b$"].iter().any(|p| hash.starts_with(p)) {
                return Err(HtpasswdError::NotBcrypt {
                    path: origin.to_string(),
                    line: i + 1,
                    user: user.to_string(),
                });
            }
            users.insert(user.to_string(), hash.to_string());
        }
        Ok(Htpasswd {
            users,
            verified: Mutex::new(HashMap::new()),
        })
    }

    /// Whether the file has no users at all (then nobody can log in).
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Whether `password` is `user`'s. Slow on a cache miss: call from a
    /// blocking thread.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        let Some(hash) = self.users.get(user) else {
            return false;
        };
        let fingerprint = Digest::sha256(password.as_bytes());
        {
            let cache = self.verified.lock().expect("htpasswd cache");
            if let Some((f, at)) = cache.get(user)
                && *f == fingerprint
                && at.elapsed() < CACHE_TTL
            {
                return true;
            }
        }
        let ok = bcrypt::verify(password, hash).unwrap_or(false);
        if ok {
            self.verified
                .lock()
                .expect("htpasswd cache")
                .insert(user.to_string(), (fingerprint, Instant::now()));
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bcrypt_only() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let users = Htpasswd::parse(&format!("# comment\nalice:{hash}\n"), "t").unwrap();
        assert!(users.verify("alice", "s3cret"));
        assert!(users.verify("alice", "s3cret"), "cached");
        assert!(!users.verify("alice", "wrong"));
        assert!(!users.verify("bob", "s3cret"));
        assert!(matches!(
            Htpasswd::parse("bob:{SHA}abc", "t"),
            Err(HtpasswdError::NotBcrypt { line: 1, .. })
        ));
        assert!(matches!(
            Htpasswd::parse("nocolon", "t"),
            Err(HtpasswdError::Malformed { .. })
        ));
    }
}
