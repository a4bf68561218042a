//! Extended attributes in the inode's own EA area (ext4's
//! `Documentation/filesystems/ext4/attributes.rst`): after the inode's
//! extra fields come a 4-byte magic, the entries (name index, name,
//! value offset and size, hash), a 4-byte zero ending them, and the
//! values packed from the end of the inode. ferry keeps every xattr of
//! an inode there, never in a separate block, and sizes the inodes so
//! the largest set fits (see [`inode_size_for`]).
//!
//! POSIX ACLs arrive in the kernel's xattr form (`system.posix_acl_*`,
//! version 2, 8 bytes an entry) and are stored in ext4's own compact
//! form (version 1, 4-byte entries for the owner, group, mask and other
//! classes), as `fs/ext4/acl.c` converts them. Names in a namespace ext4
//! has no index for are skipped and counted in the report.

use std::collections::BTreeMap;

use super::format::{put16, put32};

/// `h_magic` of an EA area.
const MAGIC: u32 = 0xEA02_0000;
/// The fixed part of an entry (`struct ext4_xattr_entry`).
const ENTRY_HEADER: usize = 16;

/// Name prefixes and their `e_name_index`, longest first where one
/// prefix starts another.
const INDEXES: &[(&str, u8)] = &[
    ("system.posix_acl_access", 2),
    ("system.posix_acl_default", 3),
    ("system.richacl", 8),
    ("user.", 1),
    ("trusted.", 4),
    ("security.", 6),
    ("system.", 7),
];

/// `e_name_index` of the ACL entries.
const ACL_ACCESS: u8 = 2;
const ACL_DEFAULT: u8 = 3;

/// POSIX ACL entry tags (`include/uapi/linux/posix_acl.h`).
const ACL_USER_OBJ: u16 = 0x01;
const ACL_USER: u16 = 0x02;
const ACL_GROUP_OBJ: u16 = 0x04;
const ACL_GROUP: u16 = 0x08;
const ACL_MASK: u16 = 0x10;
const ACL_OTHER: u16 = 0x20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub index: u8,
    pub name: Vec<u8>,
    pub value: Vec<u8>,
}

/// An inode's xattrs in ext4's terms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Encoded {
    pub entries: Vec<Entry>,
    /// Full names that ext4 cannot store (no name index).
    pub skipped: Vec<String>,
    /// How many POSIX ACLs were converted to ext4's format.
    pub acls: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("{name}: not a POSIX ACL in the kernel's xattr format ({why})")]
pub struct BadAcl {
    pub name: String,
    pub why: &'static str,
}

fn round4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

/// Encodes `xattrs` (full names to values) for ext4.
pub fn encode(xattrs: &BTreeMap<String, Vec<u8>>) -> Result<Encoded, BadAcl> {
    let mut out = Encoded::default();
    for (full, value) in xattrs {
        let Some((prefix, index)) = INDEXES.iter().find(|(p, _)| full.starts_with(p)) else {
            out.skipped.push(full.clone());
            continue;
        };
        let name = full.as_bytes()[prefix.len()..].to_vec();
        let value = if index == &ACL_ACCESS || index == &ACL_DEFAULT {
            if !name.is_empty() {
                out.skipped.push(full.clone());
                continue;
            }
            out.acls += 1;
            acl_to_ext4(value).map_err(|why| BadAcl {
                name: full.clone(),
                why,
            })?
        } else {
            value.clone()
        };
        if name.len() > 255 {
            out.skipped.push(full.clone());
            continue;
        }
        out.entries.push(Entry {
            index: *index,
            name,
            value,
        });
    }
    Ok(out)
}

/// Bytes the entries take in the EA area: magic, entries, the zero
/// ending them, values.
pub fn area_bytes(entries: &[Entry]) -> usize {
    if entries.is_empty() {
        return 0;
    }
    4 + entries
        .iter()
        .map(|e| round4(ENTRY_HEADER + e.name.len()) + round4(e.value.len()))
        .sum::<usize>()
        + 4
}

/// The smallest inode size (256, 512 or 1024 bytes) whose EA area holds
/// `area` bytes after `extra_isize` extra fields; `None` when none does.
pub fn inode_size_for(area: usize, extra_isize: usize) -> Option<u16> {
    [256u16, 512, 1024]
        .into_iter()
        .find(|size| usize::from(*size) >= super::format::GOOD_OLD_INODE_SIZE + extra_isize + area)
}

/// Writes `entries` into the EA area `area` (everything after the
/// inode's extra fields), replacing what was there. The caller checked
/// that they fit.
pub fn write_area(area: &mut [u8], entries: &[Entry]) {
    area.fill(0);
    if entries.is_empty() {
        return;
    }
    put32(area, 0, MAGIC);
    // Offsets of values are relative to the first entry, just after the
    // magic.
    let first = 4;
    let mut at = first;
    let mut value_end = area.len();
    for e in entries {
        let stored = round4(e.value.len());
        value_end -= stored;
        area[value_end..value_end + e.value.len()].copy_from_slice(&e.value);
        area[at] = e.name.len() as u8;
        area[at + 1] = e.index;
        put16(area, at + 2, (value_end - first) as u16);
        put32(area, at + 4, 0); // e_value_inum: the value is here
        put32(area, at + 8, e.value.len() as u32);
        put32(area, at + 12, hash(&e.name, &e.value));
        area[at + ENTRY_HEADER..at + ENTRY_HEADER + e.name.len()].copy_from_slice(&e.name);
        at += round4(ENTRY_HEADER + e.name.len());
    }
}

/// `ext4_xattr_hash_entry`: the name's bytes, then the value's
/// little-endian 32-bit words (zero-padded), each folded in with a
/// rotate.
fn hash(name: &[u8], value: &[u8]) -> u32 {
    let mut h: u32 = 0;
    for b in name {
        h = (h << 5) ^ (h >> 27) ^ u32::from(*b);
    }
    for word in value.chunks(4) {
        let mut w = [0u8; 4];
        w[..word.len()].copy_from_slice(word);
        h = (h << 16) ^ (h >> 16) ^ u32::from_le_bytes(w);
    }
    h
}

/// Converts an ACL from the xattr form (`posix_acl_xattr_header`
/// version 2, then `{tag u16, perm u16, id u32}` entries) to ext4's
/// (`ext4_acl_header` version 1, then 4-byte `{tag, perm}` entries for
/// the classes without an id and 8-byte ones for named users and
/// groups).
fn acl_to_ext4(value: &[u8]) -> Result<Vec<u8>, &'static str> {
    if value.len() < 4 || !(value.len() - 4).is_multiple_of(8) {
        return Err("its length is not 4 + 8n bytes");
    }
    if u32::from_le_bytes(value[..4].try_into().expect("4 bytes")) != 2 {
        return Err("version is not 2");
    }
    let mut out = 1u32.to_le_bytes().to_vec();
    for e in value[4..].chunks(8) {
        let tag = u16::from_le_bytes([e[0], e[1]]);
        out.extend_from_slice(&e[..4]);
        match tag {
            ACL_USER_OBJ | ACL_GROUP_OBJ | ACL_MASK | ACL_OTHER => {}
            ACL_USER | ACL_GROUP => out.extend_from_slice(&e[4..8]),
            _ => return Err("unknown entry tag"),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xattrs(pairs: &[(&str, &[u8])]) -> BTreeMap<String, Vec<u8>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_vec()))
            .collect()
    }

    #[test]
    fn names_map_to_indexes_and_acls_to_ext4_form() {
        // user::rw-, user:1000:r--, group::r--, mask::r--, other::---
        let mut acl = 2u32.to_le_bytes().to_vec();
        for (tag, perm, id) in [
            (1u16, 6u16, u32::MAX),
            (2, 4, 1000),
            (4, 4, u32::MAX),
            (0x10, 4, u32::MAX),
            (0x20, 0, u32::MAX),
        ] {
            acl.extend_from_slice(&tag.to_le_bytes());
            acl.extend_from_slice(&perm.to_le_bytes());
            acl.extend_from_slice(&id.to_le_bytes());
        }
        let enc = encode(&xattrs(&[
            ("security.capability", b"cap"),
            ("system.posix_acl_access", &acl),
            ("user.x", b"1"),
            ("weird.ns", b"?"),
        ]))
        .unwrap();
        assert_eq!(enc.skipped, ["weird.ns"]);
        assert_eq!(enc.acls, 1);
        let names: Vec<(u8, &[u8])> = enc
            .entries
            .iter()
            .map(|e| (e.index, e.name.as_slice()))
            .collect();
        assert_eq!(
            names,
            [(6, &b"capability"[..]), (2, &b""[..]), (1, &b"x"[..])]
        );
        // Header 4 + four short entries of 4 + one named entry of 8.
        let ext4_acl = &enc.entries[1].value;
        assert_eq!(ext4_acl.len(), 4 + 4 * 4 + 8);
        assert_eq!(&ext4_acl[..4], &1u32.to_le_bytes());
        assert_eq!(&ext4_acl[8..16], &[2, 0, 4, 0, 0xe8, 3, 0, 0]);
        assert!(encode(&xattrs(&[("system.posix_acl_access", b"bad")])).is_err());
    }

    #[test]
    fn area_layout_and_sizes() {
        let entries = vec![Entry {
            index: 6,
            name: b"capability".to_vec(),
            value: vec![1; 20],
        }];
        // magic 4 + entry round4(16 + 10) = 28 + end 4 + value 20.
        assert_eq!(area_bytes(&entries), 56);
        assert_eq!(inode_size_for(56, 32), Some(256));
        assert_eq!(inode_size_for(200, 32), Some(512));
        assert_eq!(inode_size_for(2000, 32), None);
        let mut area = vec![0xAAu8; 96];
        write_area(&mut area, &entries);
        assert_eq!(&area[..4], &MAGIC.to_le_bytes());
        assert_eq!(area[4], 10);
        assert_eq!(area[5], 6);
        // The value sits at the end, its offset counted from byte 4.
        assert_eq!(u16::from_le_bytes([area[6], area[7]]), 96 - 20 - 4);
        assert_eq!(&area[76..], &[1; 20]);
        // The entries end with a zero word.
        assert_eq!(&area[32..36], &[0; 4]);
    }
}
