//! Content digests: `algorithm ":" encoded`, per the OCI image-spec
//! ("Digests" section). ferry stores and accepts `sha256` and `sha512`, the
//! two registered algorithms; the encoded part must be lowercase hex of the
//! algorithm's exact length, so each blob has one canonical address.

use std::fmt;
use std::str::FromStr;

use sha2::Digest as _;

/// A registered digest algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// Length of the hex-encoded digest.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    pub fn hasher(self) -> Hasher {
        Hasher::new(self)
    }

    pub const ALL: [Algorithm; 2] = [Algorithm::Sha256, Algorithm::Sha512];
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sha256" => Ok(Algorithm::Sha256),
            "sha512" => Ok(Algorithm::Sha512),
            other => Err(DigestError::UnsupportedAlgorithm(other.to_string())),
        }
    }
}

/// Why a string is not a digest ferry accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("digest {0:?} has no ':' between algorithm and hex")]
    MissingSeparator(String),
    #[error("digest algorithm {0:?} is not supported (use sha256 or sha512)")]
    UnsupportedAlgorithm(String),
    #[error("digest {digest:?}: {algorithm} needs {expected} lowercase hex characters")]
    BadEncoding {
        digest: String,
        algorithm: Algorithm,
        expected: usize,
    },
}

/// A validated digest. Ordering is by algorithm, then hex.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

impl Digest {
    /// Builds a digest from its parts, validating the hex.
    pub fn new(algorithm: Algorithm, hex: &str) -> Result<Self, DigestError> {
        let valid = hex.len() == algorithm.hex_len()
            && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !valid {
            return Err(DigestError::BadEncoding {
                digest: format!("{algorithm}:{hex}"),
                algorithm,
                expected: algorithm.hex_len(),
            });
        }
        Ok(Digest {
            algorithm,
            hex: hex.to_string(),
        })
    }

    /// The digest of `data`, computed at once.
    pub fn of(algorithm: Algorithm, data: &[u8]) -> Self {
        let mut hasher = Hasher::new(algorithm);
        hasher.update(data);
        hasher.finish()
    }

    /// sha256 of `data`, the default algorithm.
    pub fn sha256(data: &[u8]) -> Self {
        Self::of(Algorithm::Sha256, data)
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The encoded (hex) part.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// A short form for humans: `sha256:0123456789ab`.
    pub fn short(&self) -> String {
        format!("{}:{}", self.algorithm, &self.hex[..12])
    }

    /// Converts to oci-spec's digest type (always valid).
    pub fn to_spec(&self) -> oci_spec::image::Digest {
        oci_spec::image::Digest::from_str(&self.to_string())
            .expect("a validated sha256/sha512 digest is a valid oci-spec digest")
    }

    /// Converts from oci-spec's digest type, refusing algorithms ferry does not store.
    pub fn from_spec(digest: &oci_spec::image::Digest) -> Result<Self, DigestError> {
        digest.to_string().parse()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm, self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (algorithm, hex) = s
            .split_once(':')
            .ok_or_else(|| DigestError::MissingSeparator(s.to_string()))?;
        Digest::new(algorithm.parse()?, hex)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Computes a digest incrementally while data streams through.
#[derive(Clone)]
pub struct Hasher {
    state: HasherState,
    bytes: u64,
}

#[derive(Clone)]
enum HasherState {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    pub fn new(algorithm: Algorithm) -> Self {
        let state = match algorithm {
            Algorithm::Sha256 => HasherState::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => HasherState::Sha512(sha2::Sha512::new()),
        };
        Hasher { state, bytes: 0 }
    }

    pub fn algorithm(&self) -> Algorithm {
        match self.state {
            HasherState::Sha256(_) => Algorithm::Sha256,
            HasherState::Sha512(_) => Algorithm::Sha512,
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        self.bytes += data.len() as u64;
        match &mut self.state {
            HasherState::Sha256(h) => h.update(data),
            HasherState::Sha512(h) => h.update(data),
        }
    }

    /// Bytes hashed so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The digest of everything hashed so far, without consuming the hasher.
    pub fn peek(&self) -> Digest {
        self.clone().finish()
    }

    pub fn finish(self) -> Digest {
        let (algorithm, hex) = match self.state {
            HasherState::Sha256(h) => (Algorithm::Sha256, to_hex(&h.finalize())),
            HasherState::Sha512(h) => (Algorithm::Sha512, to_hex(&h.finalize())),
        };
        Digest { algorithm, hex }
    }
}

fn to_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 0xf) as usize] as char);
    }
    out
}

impl std::io::Write for Hasher {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        assert_eq!(
            Digest::sha256(b"").to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            Digest::of(Algorithm::Sha512, b"abc").hex(),
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
        );
    }

    #[test]
    fn streaming_equals_one_shot() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
        let mut h = Hasher::new(Algorithm::Sha256);
        for chunk in data.chunks(977) {
            h.update(chunk);
        }
        assert_eq!(h.bytes(), data.len() as u64);
        assert_eq!(h.finish(), Digest::sha256(&data));
    }

    #[test]
    fn parse_is_strict() {
        let good = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(good.parse::<Digest>().unwrap().to_string(), good);
        for bad in [
            "sha256",
            "sha256:",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:e3b0",
            "md5:d41d8cd98f00b204e9800998ecf8427e",
            "sha512:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85g",
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn spec_round_trip() {
        let d = Digest::of(Algorithm::Sha512, b"x");
        assert_eq!(Digest::from_spec(&d.to_spec()).unwrap(), d);
    }
}
