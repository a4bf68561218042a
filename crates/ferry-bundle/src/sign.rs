//! Bundle signatures in minisign's format (jedisct1.github.io/minisign),
//! so that a site can check a bundle with Debian's `minisign` as well as
//! with ferry (docs/bundle.md, "Signing", says why minisign).
//!
//! The signed message is the exact bytes of `ferry/bundle.json`, which
//! record the digest of `index.json` and the digest and size of every
//! blob; the signature file is stored as `ferry/signature`.
//!
//! Formats (minisign's `minisign.c`; all integers little-endian):
//!
//! ```text
//! public key   untrusted comment: minisign public key <KEYID>
//!              base64("Ed" || key_id[8] || ed25519_pk[32])
//! secret key   untrusted comment: ...
//!              base64("Ed" || kdf "\0\0" || "B2" || salt[32] || ops[8] || mem[8]
//!                     || key_id[8] || ed25519_sk[64] || blake2b256("Ed" || key_id || sk)[32])
//! signature    untrusted comment: ...
//!              base64("ED" || key_id[8] || ed25519(blake2b512(message))[64])
//!              trusted comment: <text>
//!              base64(ed25519(signature[64] || <text>)[64])
//! ```
//!
//! Signing uses ring's Ed25519 (the project's crypto library) and the
//! prehashed `ED` mode, minisign's default; verification is
//! `minisign-verify`, the format author's own dependency-free verifier,
//! with legacy (non-prehashed) signatures refused. Secret keys are stored
//! unencrypted (`kdf "\0\0"`, like `minisign -G -W`) and protected by
//! their file mode; password-protected keys are refused with a clear
//! message.
//!
//! Why the signing side is written here instead of using the `minisign`
//! crate (jedisct1/rust-minisign):
//! - its `sign` mixes 64 random bytes into every Ed25519 signature
//!   ("hedged" signing), so signing the same `ferry/bundle.json` twice
//!   gives two different signatures, and a signed bundle would no longer
//!   be byte-identical for identical inputs; ring's Ed25519 is the
//!   deterministic RFC 8032 scheme, which the C `minisign` also uses;
//! - its `SecretKey::from_box` always derives a key from a password with
//!   scrypt (prompting on the terminal when none is given), so it cannot
//!   load the unencrypted keys `minisign -G -W` (and `ferry bundle
//!   keygen`) write;
//! - it would bring scrypt and its own copies of the hash functions.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use blake2::Digest as _;
use ferry_oci::atomic::AtomicWrite;
use ring::rand::SecureRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};

use crate::writer::Signer;

const ALG_ED25519: &[u8; 2] = b"Ed";
const ALG_PREHASHED: &[u8; 2] = b"ED";
const KDF_NONE: &[u8; 2] = b"\0\0";
const KDF_SCRYPT: &[u8; 2] = b"Sc";
const CHK_BLAKE2B: &[u8; 2] = b"B2";
const SECRET_KEY_LEN: usize = 2 + 2 + 2 + 32 + 8 + 8 + 8 + 64 + 32;

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} exists already; remove it or choose another name", path.display())]
    Exists { path: PathBuf },
    #[error("{what} is not a minisign {kind}: {reason}")]
    Malformed {
        what: String,
        kind: &'static str,
        reason: String,
    },
    #[error(
        "{} is encrypted with a password (made by `minisign -G`); ferry reads unencrypted minisign keys: make one with `ferry bundle keygen` or `minisign -G -W`",
        path.display()
    )]
    PasswordProtected { path: PathBuf },
    #[error("the bundle is not signed (it has no ferry/signature)")]
    Unsigned,
    #[error("the bundle is signed by key {signed_by}, not by the given key {given}")]
    WrongKey { signed_by: String, given: String },
    #[error(
        "the signature does not match ferry/bundle.json: the bundle was altered after signing, or signed with another key that has the same id"
    )]
    BadSignature,
    #[error("the signature uses minisign's legacy mode, which ferry does not accept")]
    Legacy,
    #[error("signing failed: {0}")]
    Crypto(String),
}

/// A key pair's files, as written by [`keygen`].
#[derive(Debug, Clone)]
pub struct KeyFiles {
    pub secret: PathBuf,
    pub public: PathBuf,
    /// The key id, as minisign prints it.
    pub key_id: String,
}

/// A secret key, loaded.
pub struct SecretKey {
    key_id: [u8; 8],
    pair: Ed25519KeyPair,
}

/// What a good signature says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub key_id: String,
    pub trusted_comment: String,
}

/// The key id as minisign prints it: the 8 bytes as a little-endian
/// integer, in uppercase hex.
fn key_id_text(id: &[u8; 8]) -> String {
    format!("{:X}", u64::from_le_bytes(*id))
}

/// Writes `BASE.key` (secret, mode 0600) and `BASE.pub`. Refuses to
/// overwrite either.
pub fn keygen(base: &Path) -> Result<KeyFiles, SignError> {
    let with_suffix = |s: &str| {
        let mut name = base.as_os_str().to_owned();
        name.push(s);
        PathBuf::from(name)
    };
    let (secret_path, public_path) = (with_suffix(".key"), with_suffix(".pub"));
    for p in [&secret_path, &public_path] {
        if p.exists() {
            return Err(SignError::Exists { path: p.clone() });
        }
    }
    let rng = ring::rand::SystemRandom::new();
    let mut seed = [0u8; 32];
    let mut key_id = [0u8; 8];
    rng.fill(&mut seed)
        .and_then(|()| rng.fill(&mut key_id))
        .map_err(|_| SignError::Crypto("no randomness from the system".into()))?;
    let pair =
        Ed25519KeyPair::from_seed_unchecked(&seed).map_err(|e| SignError::Crypto(e.to_string()))?;
    let public: [u8; 32] = pair
        .public_key()
        .as_ref()
        .try_into()
        .expect("Ed25519 public keys are 32 bytes");
    let id = key_id_text(&key_id);

    let mut sk = Vec::with_capacity(SECRET_KEY_LEN);
    sk.extend_from_slice(ALG_ED25519);
    sk.extend_from_slice(KDF_NONE);
    sk.extend_from_slice(CHK_BLAKE2B);
    sk.extend_from_slice(&[0u8; 32 + 8 + 8]); // salt, opslimit, memlimit: unused without a KDF
    sk.extend_from_slice(&key_id);
    sk.extend_from_slice(&seed);
    sk.extend_from_slice(&public);
    sk.extend_from_slice(&checksum(&key_id, &seed, &public));
    let secret_text = format!(
        "untrusted comment: ferry bundle secret key {id} (unencrypted: keep this file private)\n{}\n",
        BASE64.encode(&sk)
    );
    let public_text = format!(
        "untrusted comment: minisign public key {id}\n{}\n",
        public_key_base64(&key_id, &public)
    );
    write_new(&secret_path, secret_text.as_bytes(), 0o600)?;
    if let Err(e) = write_new(&public_path, public_text.as_bytes(), 0o644) {
        let _ = std::fs::remove_file(&secret_path);
        return Err(e);
    }
    Ok(KeyFiles {
        secret: secret_path,
        public: public_path,
        key_id: id,
    })
}

fn public_key_base64(key_id: &[u8; 8], public: &[u8; 32]) -> String {
    let mut pk = Vec::with_capacity(42);
    pk.extend_from_slice(ALG_ED25519);
    pk.extend_from_slice(key_id);
    pk.extend_from_slice(public);
    BASE64.encode(pk)
}

/// minisign's secret key checksum: BLAKE2b-256 of the algorithm, key id
/// and the 64-byte libsodium secret key (seed || public key).
fn checksum(key_id: &[u8; 8], seed: &[u8], public: &[u8]) -> [u8; 32] {
    let mut h = blake2::Blake2b::<blake2::digest::consts::U32>::new();
    h.update(ALG_ED25519);
    h.update(key_id);
    h.update(seed);
    h.update(public);
    h.finalize().into()
}

/// Creates `path` with `contents` and `mode`, never replacing a file
/// (see `ferry_oci::atomic`: the name appears only once the content is
/// durable, and the call fails if the name exists).
fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), SignError> {
    match AtomicWrite::new().mode(mode).create_new(path, contents) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(SignError::Exists {
            path: path.to_path_buf(),
        }),
        r => r.map_err(|source| SignError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

impl SecretKey {
    /// Loads a minisign secret key file (unencrypted).
    pub fn load(path: &Path) -> Result<SecretKey, SignError> {
        let text = std::fs::read_to_string(path).map_err(|source| SignError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let malformed = |reason: &str| SignError::Malformed {
            what: path.display().to_string(),
            kind: "secret key",
            reason: reason.to_string(),
        };
        let line = text
            .lines()
            .find(|l| !l.starts_with("untrusted comment:") && !l.trim().is_empty())
            .ok_or_else(|| malformed("no key line"))?;
        let sk = BASE64
            .decode(line.trim())
            .map_err(|_| malformed("the key line is not base64"))?;
        if sk.len() != SECRET_KEY_LEN || &sk[0..2] != ALG_ED25519 {
            return Err(malformed("wrong length or algorithm (a public key?)"));
        }
        match &sk[2..4] {
            k if k == KDF_NONE => {}
            k if k == KDF_SCRYPT => {
                return Err(SignError::PasswordProtected {
                    path: path.to_path_buf(),
                });
            }
            _ => return Err(malformed("unknown key derivation function")),
        }
        if &sk[4..6] != CHK_BLAKE2B {
            return Err(malformed("unknown checksum algorithm"));
        }
        let rest = &sk[54..];
        let key_id: [u8; 8] = rest[..8].try_into().expect("8 bytes");
        let (seed, public) = (&rest[8..40], &rest[40..72]);
        // `minisign -G -W` leaves the checksum of an unencrypted key as
        // zeros (minisign checks it only after decrypting); the pair check
        // below still catches damage.
        let stored = &rest[72..104];
        if stored.iter().any(|b| *b != 0) && checksum(&key_id, seed, public) != stored {
            return Err(malformed("its checksum does not match (damaged file)"));
        }
        let pair = Ed25519KeyPair::from_seed_and_public_key(seed, public)
            .map_err(|_| malformed("its public half does not belong to its secret half"))?;
        Ok(SecretKey { key_id, pair })
    }

    /// The key id, as minisign prints it.
    pub fn key_id(&self) -> String {
        key_id_text(&self.key_id)
    }

    /// The public key file's contents.
    pub fn public_key_file(&self) -> String {
        let public: [u8; 32] = self
            .pair
            .public_key()
            .as_ref()
            .try_into()
            .expect("32 bytes");
        format!(
            "untrusted comment: minisign public key {}\n{}\n",
            self.key_id(),
            public_key_base64(&self.key_id, &public)
        )
    }

    /// A minisign signature file for `message`. Deterministic (Ed25519
    /// is, and the trusted comment holds no time), so a signed bundle is
    /// still byte-identical for identical inputs.
    pub fn sign(&self, message: &[u8], trusted_comment: &str) -> Vec<u8> {
        let hash = blake2::Blake2b512::digest(message);
        let signature = self.pair.sign(&hash);
        let mut first = Vec::with_capacity(74);
        first.extend_from_slice(ALG_PREHASHED);
        first.extend_from_slice(&self.key_id);
        first.extend_from_slice(signature.as_ref());
        let mut global = signature.as_ref().to_vec();
        global.extend_from_slice(trusted_comment.as_bytes());
        let global = self.pair.sign(&global);
        format!(
            "untrusted comment: signature from ferry bundle key {}\n{}\ntrusted comment: {trusted_comment}\n{}\n",
            self.key_id(),
            BASE64.encode(&first),
            BASE64.encode(global.as_ref())
        )
        .into_bytes()
    }
}

/// The trusted comment of a bundle signature: what is signed, by digest.
pub fn trusted_comment(manifest: &[u8]) -> String {
    format!(
        "file:{}\tdigest:{}",
        crate::format::MANIFEST,
        ferry_oci::Digest::sha256(manifest)
    )
}

/// The writer's signer for `key`.
pub fn signer(key: SecretKey) -> Signer {
    Box::new(move |manifest: &[u8]| Ok(key.sign(manifest, &trusted_comment(manifest))))
}

/// Checks `signature` (the bytes of `ferry/signature`) over `manifest`
/// (the bytes of `ferry/bundle.json`) with `public_key`: a path to a
/// minisign public key file, or the key itself (`RWS...`, as `minisign -P`
/// takes it).
pub fn verify_signature(
    public_key: &str,
    manifest: &[u8],
    signature: &[u8],
) -> Result<Verified, SignError> {
    let key_text = match std::fs::read_to_string(public_key) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => public_key.to_string(),
        Err(source) => {
            return Err(SignError::Io {
                path: PathBuf::from(public_key),
                source,
            });
        }
    };
    let malformed_key = |reason: &str| SignError::Malformed {
        what: public_key.to_string(),
        kind: "public key",
        reason: reason.to_string(),
    };
    let key_line = key_text
        .lines()
        .map(str::trim)
        .find(|l| !l.starts_with("untrusted comment:") && !l.is_empty())
        .ok_or_else(|| malformed_key("no key line (not a file, and not a key)"))?;
    let key = minisign_verify::PublicKey::from_base64(key_line)
        .map_err(|e| malformed_key(&e.to_string()))?;
    let key_id = decode_key_id(key_line).ok_or_else(|| malformed_key("too short"))?;

    let signature_text = std::str::from_utf8(signature).map_err(|_| SignError::Malformed {
        what: crate::format::SIGNATURE.into(),
        kind: "signature",
        reason: "not text".into(),
    })?;
    let malformed_sig = |reason: String| SignError::Malformed {
        what: crate::format::SIGNATURE.into(),
        kind: "signature",
        reason,
    };
    let parsed = minisign_verify::Signature::decode(signature_text)
        .map_err(|e| malformed_sig(e.to_string()))?;
    let signed_by = signature_text
        .lines()
        .nth(1)
        .and_then(|l| decode_key_id(l.trim()))
        .ok_or_else(|| malformed_sig("too short".into()))?;
    if signed_by != key_id {
        return Err(SignError::WrongKey {
            signed_by: key_id_text(&signed_by),
            given: key_id_text(&key_id),
        });
    }
    match key.verify(manifest, &parsed, false) {
        Ok(()) => Ok(Verified {
            key_id: key_id_text(&key_id),
            trusted_comment: parsed.trusted_comment().to_string(),
        }),
        Err(minisign_verify::Error::UnexpectedAlgorithm) => Err(SignError::Legacy),
        Err(_) => Err(SignError::BadSignature),
    }
}

/// The key id inside a base64 key or signature line (bytes 2..10).
fn decode_key_id(line: &str) -> Option<[u8; 8]> {
    let bin = BASE64.decode(line).ok()?;
    bin.get(2..10)?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify() {
        let dir = tempfile::tempdir().unwrap();
        let files = keygen(&dir.path().join("k")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&files.secret)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(matches!(
            keygen(&dir.path().join("k")),
            Err(SignError::Exists { .. })
        ));
        let key = SecretKey::load(&files.secret).unwrap();
        assert_eq!(key.key_id(), files.key_id);
        assert_eq!(
            key.public_key_file(),
            std::fs::read_to_string(&files.public).unwrap()
        );
        let message = b"{\"schemaVersion\":1}";
        let sig = key.sign(message, &trusted_comment(message));
        assert_eq!(sig, key.sign(message, &trusted_comment(message)));
        let public = files.public.to_str().unwrap();
        let ok = verify_signature(public, message, &sig).unwrap();
        assert!(ok.trusted_comment.contains("ferry/bundle.json"));
        // The key as text works too.
        let text = std::fs::read_to_string(&files.public).unwrap();
        let line = text.lines().nth(1).unwrap();
        assert!(verify_signature(line, message, &sig).is_ok());
        assert!(matches!(
            verify_signature(public, b"{\"schemaVersion\":2}", &sig),
            Err(SignError::BadSignature)
        ));
        let other = keygen(&dir.path().join("other")).unwrap();
        assert!(matches!(
            verify_signature(other.public.to_str().unwrap(), message, &sig),
            Err(SignError::WrongKey { .. })
        ));
        assert!(matches!(
            SecretKey::load(&files.public),
            Err(SignError::Malformed { .. })
        ));
    }
}
