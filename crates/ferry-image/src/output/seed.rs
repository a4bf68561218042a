//! The identifiers an output carries (GPT disk and partition GUIDs,
//! filesystem UUIDs, the ext4 hash seed, FAT serials, the live ISO's
//! marker file), derived from what the build is and never from a clock or
//! a random source, so two builds of the same inputs and
//! SOURCE_DATE_EPOCH give the same bytes; and different images, or the
//! same image built at another SOURCE_DATE_EPOCH, different identifiers.
//!
//! As systemd-repart derives its partition UUIDs (repart.d(5), "UUID="):
//! a hash of the image's identity and of a label naming the identifier,
//! with RFC 9562's version 4 and variant bits set where a UUID is wanted.

use sha2::{Digest, Sha256};

/// The source of one output's identifiers.
pub struct Seed {
    domain: String,
    identity: String,
    mtime: i64,
}

impl Seed {
    /// Identifiers of the output `domain` (`disk`, `live ISO LABEL`) of
    /// the image `identity` (its name and base digest) built at `mtime`.
    pub fn new(domain: &str, identity: &str, mtime: i64) -> Seed {
        Seed {
            domain: domain.to_string(),
            identity: identity.to_string(),
            mtime,
        }
    }

    /// 32 bytes for the identifier `label`: SHA-256 of every input,
    /// each prefixed with its length so no two inputs read alike.
    pub fn bytes(&self, label: &str) -> [u8; 32] {
        let mut hash = Sha256::new();
        for part in [
            b"ferry image".as_slice(),
            self.domain.as_bytes(),
            self.identity.as_bytes(),
            &self.mtime.to_le_bytes(),
            label.as_bytes(),
        ] {
            hash.update((part.len() as u64).to_le_bytes());
            hash.update(part);
        }
        hash.finalize().into()
    }

    /// A version 4 UUID, in its big-endian byte order (ext4, `blkid`).
    pub fn uuid(&self, label: &str) -> [u8; 16] {
        let mut b = self.first16(label);
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        b
    }

    /// The same, in a GPT GUID's mixed-endian byte order (UEFI 2.10
    /// appendix A): the version is in byte 7.
    pub fn guid(&self, label: &str) -> [u8; 16] {
        let mut b = self.first16(label);
        b[7] = (b[7] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        b
    }

    pub fn u32(&self, label: &str) -> u32 {
        let b = self.bytes(label);
        u32::from_le_bytes(b[..4].try_into().expect("4 bytes"))
    }

    pub fn u64(&self, label: &str) -> u64 {
        let b = self.bytes(label);
        u64::from_le_bytes(b[..8].try_into().expect("8 bytes"))
    }

    /// `digits` (at most 64) lower-case hex digits.
    pub fn hex(&self, label: &str, digits: usize) -> String {
        let hex: String = self
            .bytes(label)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        hex[..digits].to_string()
    }

    fn first16(&self, label: &str) -> [u8; 16] {
        self.bytes(label)[..16].try_into().expect("16 bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_input_changes_every_identifier_and_uuids_are_version_4() {
        let seed = Seed::new("disk", "debian-12@sha256:aa", 1_700_000_000);
        let same = Seed::new("disk", "debian-12@sha256:aa", 1_700_000_000);
        assert_eq!(seed.uuid("root"), same.uuid("root"));
        for other in [
            Seed::new("live ISO", "debian-12@sha256:aa", 1_700_000_000),
            Seed::new("disk", "debian-12@sha256:ab", 1_700_000_000),
            Seed::new("disk", "debian-12@sha256:aa", 1_700_000_001),
        ] {
            assert_ne!(seed.uuid("root"), other.uuid("root"));
        }
        assert_ne!(seed.uuid("root"), seed.uuid("esp"));
        let uuid = seed.uuid("root");
        assert_eq!((uuid[6] >> 4, uuid[8] >> 6), (4, 0b10));
        let guid = seed.guid("root");
        assert_eq!((guid[7] >> 4, guid[8] >> 6), (4, 0b10));
        assert_eq!(seed.hex("marker", 16).len(), 16);
    }
}
