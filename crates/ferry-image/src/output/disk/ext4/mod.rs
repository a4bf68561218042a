//! The ext4 root filesystem of the disk: made by `mke2fs -d` from the
//! stage, straight into the root partition's offset of the disk file,
//! then fixed up in Rust so that it says what the [`Tree`] says.
//!
//! Why a fix-up: the build runs without root, so the stage cannot carry
//! owners, the image's modes, device nodes (they are empty placeholder
//! files) or most xattrs (`security.capability` needs `CAP_SETFCAP`), and
//! `mke2fs -d` copies what the stage has. No Rust crate writes ext4, and
//! `mke2fs` is the one host tool a build may use. So after it ran, every
//! path of the tree is looked up in the new filesystem and its inode
//! rewritten: type and permission bits (setuid, setgid, sticky), owner
//! (low and high halves), all four times (the tree's mtime: atime, ctime
//! and crtime too, so the output is reproducible), device numbers (and
//! the directory entry's file type), and the xattrs in the inode's EA
//! area ([`xattr`]); then the inode and directory block checksums are
//! recomputed (`metadata_csum`). [`format`] is the small reader and
//! patcher this needs, after the kernel's
//! `Documentation/filesystems/ext4/`.
//!
//! The feature set is fixed here, not taken from the host's
//! `/etc/mke2fs.conf` (`MKE2FS_CONFIG` points at ferry's own): the
//! features every GRUB 2.06 and RHEL 8/9 kernel read. `metadata_csum` is
//! on (ro_compat: GRUB ignores it, kernels since 3.18 check it), but
//! `metadata_csum_seed` is off (an incompat feature GRUB 2.06 refuses:
//! "unknown filesystem"), and so are `orphan_file` (e2fsprogs 1.47; older
//! e2fsck cannot check it), `inline_data`, `large_dir` and `casefold`.
//!
//! Reproducibility: `mke2fs` 1.47.0 reads each directory with
//! `scandir(..., alphasort)`; under `LC_ALL=C` that is byte order,
//! whatever order the host's filesystem lists the stage in, so inodes and
//! blocks are allocated in the tree's order. The UUID and the directory
//! hash seed are given (`-U`, `-E hash_seed=`), `E2FSPROGS_FAKE_TIME`
//! fixes the superblock's times, the inode tables and journal are not
//! written at all (`assume_storage_prezeroed`: the partition is a hole in
//! a new sparse file), and the fix-up sets every time the stage leaked.

pub mod format;
pub mod xattr;

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use ferry_oci::progress::Progress;

use crate::rootfs::tree::{Inode, Kind, display};
use crate::rootfs::{InodeId, Rootfs, Stage, Tree};
use format::{Ext4, FormatError, file_type, inode, le16, le32, put16, put32};

pub const BLOCK_SIZE: u64 = 4096;
/// `i_extra_isize` of the inodes `mke2fs` writes (`sizeof(struct
/// ext4_inode_large) - 128`): room for the nanosecond and creation times
/// and the high checksum half.
pub const EXTRA_ISIZE: usize = 32;

/// ferry's `mke2fs.conf`: nothing of the host's configuration leaks in.
const MKE2FS_CONF: &str = "[defaults]\n\
    \tbase_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr\n\
    \tdefault_mntopts = acl,user_xattr\n\
    \tenable_periodic_fsck = 0\n\
    \tblocksize = 4096\n\
    \tinode_ratio = 16384\n\
    \treserved_ratio = 5.0\n\
    \n\
    [fs_types]\n\
    \text4 = {\n\
    \t\tfeatures = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize\n\
    \t}\n\
    \tferry = {\n\
    \t\tinode_ratio = 16384\n\
    \t}\n";

#[derive(Debug, thiserror::Error)]
pub enum Ext4Error {
    #[error(
        "mke2fs was not found on the build host (looked in PATH, /usr/sbin, /sbin): install e2fsprogs"
    )]
    NoMke2fs,
    #[error(
        "the build host's mke2fs is e2fsprogs {found}; 1.47.0 or later is needed (its -d sorts directories, for reproducible output, and it has assume_storage_prezeroed)"
    )]
    OldMke2fs { found: String },
    #[error("running mke2fs: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("mke2fs ran out of space in the root filesystem: {stderr}")]
    NoSpace { stderr: String },
    #[error("mke2fs failed ({status}): {stderr}")]
    Mke2fs {
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error("{path}: missing from the ext4 filesystem mke2fs wrote")]
    Missing { path: String },
    #[error("{path}: in the ext4 filesystem but not in the image")]
    Unexpected { path: String },
    #[error("{path}: the ext4 filesystem has a {found:#o} inode where the image has a {expected}")]
    WrongType {
        path: String,
        found: u16,
        expected: &'static str,
    },
    #[error(
        "{path}: hard link to ext4 inode {found}, the other names of the file are inode {expected}"
    )]
    HardLink {
        path: String,
        found: u32,
        expected: u32,
    },
    #[error(
        "{path}: mke2fs stored xattrs of the build host's copy in a separate block; build from a directory without extended attributes"
    )]
    HostXattrBlock { path: String },
    #[error(
        "{path}: its extended attributes take {bytes} bytes, more than fit in a 1024-byte ext4 inode"
    )]
    XattrsTooLarge { path: String, bytes: usize },
    #[error("{path}: {source}")]
    Acl {
        path: String,
        #[source]
        source: xattr::BadAcl,
    },
    #[error("{path}: the ext4 filesystem read back differs from the image: {what}")]
    Differs { path: String, what: String },
}

/// What `mke2fs` makes.
#[derive(Debug, Clone)]
pub struct Params {
    pub uuid: [u8; 16],
    pub hash_seed: [u8; 16],
    /// Byte offset of the filesystem in the disk file.
    pub offset: u64,
    /// Size of the filesystem, a multiple of [`BLOCK_SIZE`].
    pub bytes: u64,
    pub inode_size: u16,
    pub inodes: u64,
    pub journal_mib: u64,
    /// `E2FSPROGS_FAKE_TIME`: the superblock's times.
    pub mtime: i64,
}

/// Counts from the fix-up, for the build report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FixupStats {
    /// Inodes rewritten.
    pub inodes: u64,
    pub devices: u64,
    /// POSIX ACLs converted to ext4's format.
    pub acls: u64,
    /// `path: name` of each xattr ext4 has no namespace for (skipped).
    pub skipped_xattrs: Vec<String>,
}

/// `mke2fs` on the build host.
pub fn find_mke2fs() -> Result<PathBuf, Ext4Error> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/sbin"].map(PathBuf::from));
    dirs.into_iter()
        .map(|d| d.join("mke2fs"))
        .find(|p| p.is_file())
        .ok_or(Ext4Error::NoMke2fs)
}

pub fn uuid_string(u: &[u8; 16]) -> String {
    let h: String = u.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// Checks the e2fsprogs version `mke2fs -V` reports (`mke2fs 1.47.0
/// (5-Feb-2023)`): 1.46 reads directories in the host filesystem's order.
fn check_mke2fs_version(program: &Path) -> Result<(), Ext4Error> {
    let output = Command::new(program)
        .env_clear()
        .arg("-V")
        .output()
        .map_err(Ext4Error::Spawn)?;
    let text = String::from_utf8_lossy(&output.stderr);
    let version = text
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    let parts: Vec<u32> = version.split('.').map_while(|p| p.parse().ok()).collect();
    if parts.is_empty() {
        return Err(Ext4Error::OldMke2fs {
            found: format!("of unknown version ({})", text.trim()),
        });
    }
    if parts < vec![1, 47] {
        return Err(Ext4Error::OldMke2fs { found: version });
    }
    Ok(())
}

/// Runs `mke2fs -d stage` into `disk` at `params.offset`. `work` holds
/// its configuration file.
pub fn mke2fs(stage: &Path, disk: &Path, work: &Path, params: &Params) -> Result<(), Ext4Error> {
    let program = find_mke2fs()?;
    check_mke2fs_version(&program)?;
    let conf = work.join("mke2fs.conf");
    std::fs::write(&conf, MKE2FS_CONF).map_err(Ext4Error::Spawn)?;
    let extended = format!(
        "offset={},hash_seed={},root_owner=0:0,nodiscard,assume_storage_prezeroed=1",
        params.offset,
        uuid_string(&params.hash_seed)
    );
    let args: Vec<OsString> = vec![
        "-q".into(),
        "-F".into(),
        "-t".into(),
        "ext4".into(),
        "-T".into(),
        "ferry".into(),
        "-b".into(),
        BLOCK_SIZE.to_string().into(),
        "-I".into(),
        params.inode_size.to_string().into(),
        "-N".into(),
        params.inodes.to_string().into(),
        "-J".into(),
        format!("size={}", params.journal_mib).into(),
        "-U".into(),
        uuid_string(&params.uuid).into(),
        "-E".into(),
        extended.into(),
        "-d".into(),
        stage.into(),
        disk.into(),
        (params.bytes / BLOCK_SIZE).to_string().into(),
    ];
    let output = Command::new(program)
        .env_clear()
        // alphasort() collates with the locale: C is byte order.
        .env("LC_ALL", "C")
        .env("MKE2FS_CONFIG", &conf)
        .env("E2FSPROGS_FAKE_TIME", params.mtime.max(1).to_string())
        .args(&args)
        .output()
        .map_err(Ext4Error::Spawn)?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
        if stderr.contains("Could not allocate block") || stderr.contains("No space left") {
            return Err(Ext4Error::NoSpace { stderr });
        }
        return Err(Ext4Error::Mke2fs {
            status: output.status,
            stderr,
        });
    }
    Ok(())
}

/// The inode size whose EA area holds every inode's xattrs.
pub fn inode_size(tree: &Tree) -> Result<u16, Ext4Error> {
    let mut largest = 0;
    for (path, _, inode) in tree.iter() {
        let encoded = xattr::encode(&inode.meta.xattrs).map_err(|source| Ext4Error::Acl {
            path: display(path),
            source,
        })?;
        let bytes = xattr::area_bytes(&encoded.entries);
        if xattr::inode_size_for(bytes, EXTRA_ISIZE).is_none() {
            return Err(Ext4Error::XattrsTooLarge {
                path: display(path),
                bytes,
            });
        }
        largest = largest.max(bytes);
    }
    Ok(xattr::inode_size_for(largest, EXTRA_ISIZE).expect("checked per inode"))
}

/// Bytes of data, directory and symlink blocks the tree takes (each
/// inode once), an upper bound of what `mke2fs -d` allocates for it.
pub fn content_bytes(tree: &Tree) -> u64 {
    // The longest entry (a 255-byte name) that may not fit at the end of
    // a directory block, and a leaf block's checksum tail.
    const DIR_BLOCK_USABLE: u64 = BLOCK_SIZE - 12 - (8 + 256);
    let mut blocks = 0u64;
    let mut dir_bytes: HashMap<InodeId, u64> = HashMap::new();
    for (path, id, inode) in tree.iter() {
        if let Some(parent) = path.parent() {
            let name_len = path.file_name().map_or(0, |n| n.len()) as u64;
            *dir_bytes
                .entry(tree.id(parent).expect("parents are in the tree"))
                .or_insert(24) += (8 + name_len).div_ceil(4) * 4;
        }
        if path != inode.first_link() {
            continue;
        }
        match &inode.kind {
            Kind::File { size } => {
                let data = size.div_ceil(BLOCK_SIZE);
                // Four extents of up to 32768 blocks fit in the inode;
                // beyond that, one index block per 340 extents.
                let extent_blocks = if data > 4 * 32768 {
                    data.div_ceil(32768 * 340) + 1
                } else {
                    0
                };
                blocks += data + extent_blocks;
            }
            Kind::Symlink { target } if target.as_os_str().len() >= 60 => blocks += 1,
            Kind::Directory => {
                dir_bytes.entry(id).or_insert(24);
            }
            _ => {}
        }
    }
    blocks += dir_bytes
        .values()
        .map(|b| b.div_ceil(DIR_BLOCK_USABLE))
        .sum::<u64>();
    blocks * BLOCK_SIZE
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Rewrite what differs.
    Fix,
    /// Fail on the first difference.
    Check,
}

/// Makes the filesystem at byte `base` of `file` say what `tree` says.
pub fn fix_up(
    file: &File,
    base: u64,
    tree: &Tree,
    progress: &dyn Progress,
    task: &str,
) -> Result<FixupStats, Ext4Error> {
    walk(file, base, tree, None, Mode::Fix, progress, task)
}

/// Reads the filesystem back: every path of the rootfs must be there
/// with its kind, mode, owner, times, device and xattrs, checksums
/// right, every regular file's bytes and every symlink's target as
/// staged, and nothing else (but `lost+found`).
pub fn check(
    file: &File,
    base: u64,
    rootfs: &Rootfs,
    progress: &dyn Progress,
    task: &str,
) -> Result<(), Ext4Error> {
    walk(
        file,
        base,
        rootfs.tree(),
        Some(rootfs.stage()),
        Mode::Check,
        progress,
        task,
    )
    .map(drop)
}

/// A directory being walked: its entries by name, and its blocks, kept
/// in memory until every entry of the directory was visited.
struct OpenDir {
    path: PathBuf,
    ino: u32,
    raw: Vec<u8>,
    blocks: Vec<u64>,
    data: Vec<Vec<u8>>,
    dirty: Vec<bool>,
    names: HashMap<Vec<u8>, format::DirEntry>,
}

const ROOT_INO: u32 = 2;

fn open_dir(fs: &Ext4<'_>, path: &Path, ino: u32) -> Result<OpenDir, Ext4Error> {
    let raw = fs.read_inode(ino)?;
    let blocks: Vec<u64> = fs
        .extents(ino, &raw)?
        .iter()
        .flat_map(|e| e.physical..e.physical + e.len)
        .collect();
    let mut data = Vec::with_capacity(blocks.len());
    let mut names = HashMap::new();
    for (index, block) in blocks.iter().enumerate() {
        let bytes = fs.read_block(*block)?;
        format::dir_entries(ino, index, &bytes, |name, entry| {
            if name != b"." && name != b".." {
                names.insert(name.to_vec(), entry);
            }
        })?;
        data.push(bytes);
    }
    Ok(OpenDir {
        path: path.to_path_buf(),
        ino,
        raw,
        dirty: vec![false; blocks.len()],
        blocks,
        data,
        names,
    })
}

fn close_dir(fs: &Ext4<'_>, mut dir: OpenDir) -> Result<(), Ext4Error> {
    let is_root = dir.ino == ROOT_INO;
    if let Some(name) = dir
        .names
        .keys()
        .find(|n| !(is_root && n.as_slice() == b"lost+found"))
    {
        let name = String::from_utf8_lossy(name);
        return Err(Ext4Error::Unexpected {
            path: display(&dir.path.join(&*name)),
        });
    }
    for (index, dirty) in dir.dirty.iter().enumerate() {
        if *dirty {
            let block = &mut dir.data[index];
            fs.seal_dir_block(dir.ino, &dir.raw, block);
            fs.write_block(dir.blocks[index], block)?;
        }
    }
    Ok(())
}

fn walk(
    file: &File,
    base: u64,
    tree: &Tree,
    stage: Option<&Stage>,
    mode: Mode,
    progress: &dyn Progress,
    task: &str,
) -> Result<FixupStats, Ext4Error> {
    let fs = Ext4::open(file, base)?;
    let mut stats = FixupStats::default();
    let mut stack: Vec<OpenDir> = Vec::new();
    // ext4 inode of each hard-linked file seen so far.
    let mut linked: HashMap<InodeId, u32> = HashMap::new();
    // The staged and the read-back bytes of the file being compared.
    let mut buffers = if stage.is_some() {
        [vec![0u8; CHUNK], vec![0u8; CHUNK]]
    } else {
        [Vec::new(), Vec::new()]
    };
    let mut done = 0u64;
    for (path, id, node) in tree.iter() {
        done += 1;
        if done.is_multiple_of(4096) {
            progress.advance(task, 4096);
        }
        let Some(parent) = path.parent() else {
            patch_inode(&fs, ROOT_INO, path, node, mode, &mut stats)?;
            stack.push(open_dir(&fs, path, ROOT_INO)?);
            continue;
        };
        while stack.last().is_some_and(|d| d.path != parent) {
            close_dir(&fs, stack.pop().expect("not empty"))?;
        }
        let dir = stack.last_mut().expect("the root stays open");
        let name = path.file_name().expect("not the root").as_encoded_bytes();
        let entry = dir.names.remove(name).ok_or_else(|| Ext4Error::Missing {
            path: display(path),
        })?;
        let want_type = match node.kind {
            Kind::Directory => file_type::DIRECTORY,
            Kind::File { .. } => file_type::REGULAR,
            Kind::Symlink { .. } => file_type::SYMLINK,
            Kind::CharDevice { .. } => file_type::CHAR_DEVICE,
            Kind::BlockDevice { .. } => file_type::BLOCK_DEVICE,
            Kind::Fifo => file_type::FIFO,
        };
        if entry.file_type != want_type {
            if mode == Mode::Check {
                return Err(Ext4Error::Differs {
                    path: display(path),
                    what: format!(
                        "directory entry type {}, expected {want_type}",
                        entry.file_type
                    ),
                });
            }
            dir.data[entry.block][entry.offset + 7] = want_type;
            dir.dirty[entry.block] = true;
        }
        if node.links().len() > 1 {
            match linked.get(&id) {
                Some(&first) if first != entry.ino => {
                    return Err(Ext4Error::HardLink {
                        path: display(path),
                        found: entry.ino,
                        expected: first,
                    });
                }
                Some(_) => continue,
                None => {
                    linked.insert(id, entry.ino);
                }
            }
        }
        patch_inode(&fs, entry.ino, path, node, mode, &mut stats)?;
        if let Some(stage) = stage {
            check_content(&fs, entry.ino, path, node, stage, &mut buffers)?;
        }
        if node.kind.is_dir() {
            stack.push(open_dir(&fs, path, entry.ino)?);
        }
    }
    while let Some(dir) = stack.pop() {
        close_dir(&fs, dir)?;
    }
    progress.advance(task, done % 4096);
    Ok(stats)
}

/// Rewrites inode `ino` (the ext4 inode of `path`) from `node`, or in
/// check mode fails where it differs.
fn patch_inode(
    fs: &Ext4<'_>,
    ino: u32,
    path: &Path,
    node: &Inode,
    mode: Mode,
    stats: &mut FixupStats,
) -> Result<(), Ext4Error> {
    let raw = fs.read_inode(ino)?;
    let mut want = raw.clone();
    let shown = || display(path);
    let found_type = le16(&raw, inode::MODE) & 0o170000;
    let is_device = matches!(
        node.kind,
        Kind::CharDevice { .. } | Kind::BlockDevice { .. }
    );
    let type_bits = node.kind.type_bits() as u16;
    // A device node was staged as an empty regular file.
    if found_type != type_bits && !(is_device && found_type == 0o100000) {
        return Err(Ext4Error::WrongType {
            path: shown(),
            found: found_type,
            expected: node.kind.name(),
        });
    }
    if le32(&raw, inode::FILE_ACL_LO) != 0 || le16(&raw, inode::FILE_ACL_HIGH) != 0 {
        return Err(Ext4Error::HostXattrBlock { path: shown() });
    }
    let meta = &node.meta;
    put16(&mut want, inode::MODE, node.st_mode() as u16);
    put16(&mut want, inode::UID, meta.uid as u16);
    put16(&mut want, inode::UID_HIGH, (meta.uid >> 16) as u16);
    put16(&mut want, inode::GID, meta.gid as u16);
    put16(&mut want, inode::GID_HIGH, (meta.gid >> 16) as u16);
    let extra = fs.extra_isize(&raw);
    for (seconds, extra_field) in [
        (inode::ATIME, inode::ATIME_EXTRA),
        (inode::CTIME, inode::CTIME_EXTRA),
        (inode::MTIME, inode::MTIME_EXTRA),
        (inode::CRTIME, inode::CRTIME_EXTRA),
    ] {
        put_time(&mut want, seconds, extra_field, extra, meta.mtime);
    }
    if let Kind::CharDevice { major, minor } | Kind::BlockDevice { major, minor } = node.kind {
        if le32(&raw, inode::SIZE_LO) != 0
            || le32(&raw, inode::SIZE_HIGH) != 0
            || le32(&raw, inode::BLOCKS_LO) != 0
        {
            return Err(Ext4Error::WrongType {
                path: shown(),
                found: found_type,
                expected: "device (its placeholder has content)",
            });
        }
        let flags = le32(&raw, inode::FLAGS) & !format::EXTENTS_FL;
        put32(&mut want, inode::FLAGS, flags);
        encode_device(&mut want, major, minor);
        if found_type != type_bits {
            stats.devices += 1;
        }
    }
    let encoded = xattr::encode(&meta.xattrs).map_err(|source| Ext4Error::Acl {
        path: shown(),
        source,
    })?;
    let area_start = format::GOOD_OLD_INODE_SIZE + extra;
    let area = &mut want[area_start..];
    let bytes = xattr::area_bytes(&encoded.entries);
    if bytes > area.len() {
        return Err(Ext4Error::XattrsTooLarge {
            path: shown(),
            bytes,
        });
    }
    xattr::write_area(area, &encoded.entries);
    stats.acls += encoded.acls as u64;
    stats.skipped_xattrs.extend(
        encoded
            .skipped
            .iter()
            .map(|name| format!("{}: {name}", shown())),
    );
    fs.seal_inode(ino, &mut want);
    if want == raw {
        return Ok(());
    }
    match mode {
        Mode::Fix => {
            stats.inodes += 1;
            fs.write_inode(ino, &want)?;
            Ok(())
        }
        Mode::Check => Err(Ext4Error::Differs {
            path: shown(),
            what: describe(&raw, &want),
        }),
    }
}

/// Compares a regular file's bytes with its staged copy (holes and
/// unwritten extents read as zeros), or a symlink's target with the
/// tree's, streaming a chunk at a time.
fn check_content(
    fs: &Ext4<'_>,
    ino: u32,
    path: &Path,
    node: &Inode,
    stage: &Stage,
    buffers: &mut [Vec<u8>; 2],
) -> Result<(), Ext4Error> {
    let differs = |what: String| Ext4Error::Differs {
        path: display(path),
        what,
    };
    let raw = fs.read_inode(ino)?;
    let size =
        u64::from(le32(&raw, inode::SIZE_LO)) | (u64::from(le32(&raw, inode::SIZE_HIGH)) << 32);
    match &node.kind {
        Kind::Symlink { target } => {
            let want = target.as_os_str().as_encoded_bytes();
            if size >= fs.block_size {
                return Err(differs(format!("symlink of {size} bytes")));
            }
            let len = size as usize;
            let mut got = vec![0u8; len];
            if le32(&raw, inode::FLAGS) & format::EXTENTS_FL == 0 && len < inode::BLOCK_LEN {
                // A fast symlink: the target is in i_block.
                got.copy_from_slice(&raw[inode::BLOCK..inode::BLOCK + len]);
            } else {
                let extents = fs.extents(ino, &raw)?;
                let first = extents.first().filter(|e| e.logical == 0 && !e.unwritten);
                let first = first.ok_or_else(|| differs("symlink without its block".into()))?;
                fs.read_at(first.physical, 0, &mut got)?;
            }
            if got != want {
                return Err(differs(format!(
                    "symlink to {:?}, expected {:?}",
                    String::from_utf8_lossy(&got),
                    target
                )));
            }
            Ok(())
        }
        Kind::File { size: want_size } => {
            if size != *want_size {
                return Err(differs(format!("{size} bytes, expected {want_size}")));
            }
            let [expected, got] = buffers;
            let mut reader = ContentReader {
                fs,
                staged: stage.open(path).map_err(FormatError::Io)?,
                expected,
                got,
                at: 0,
            };
            let bs = fs.block_size;
            for e in fs.extents(ino, &raw)? {
                let start = (e.logical * bs).min(size);
                let end = ((e.logical + e.len) * bs).min(size);
                if start < reader.at {
                    return Err(differs("overlapping extents".into()));
                }
                // A hole before the extent, then the extent.
                reader.compare(start, None).map_err(&differs)?;
                let source = (!e.unwritten).then_some((e.physical, start));
                reader.compare(end, source).map_err(&differs)?;
            }
            reader.compare(size, None).map_err(&differs)
        }
        _ => Ok(()),
    }
}

/// Bytes compared at a time.
const CHUNK: usize = 1 << 20;

/// A regular file read back from ext4 alongside its staged copy.
struct ContentReader<'a, 'f> {
    fs: &'a Ext4<'f>,
    staged: File,
    expected: &'a mut [u8],
    got: &'a mut [u8],
    /// Bytes compared so far.
    at: u64,
}

impl ContentReader<'_, '_> {
    /// Compares the file up to byte `until`: from disk where `source` is
    /// `(physical block, file offset of that block)`, else zeros.
    fn compare(&mut self, until: u64, source: Option<(u64, u64)>) -> Result<(), String> {
        while self.at < until {
            let n = (until - self.at).min(CHUNK as u64) as usize;
            self.staged
                .read_exact(&mut self.expected[..n])
                .map_err(|e| format!("reading the staged copy: {e}"))?;
            match source {
                Some((block, offset)) => self
                    .fs
                    .read_at(block, self.at - offset, &mut self.got[..n])
                    .map_err(|e| e.to_string())?,
                None => self.got[..n].fill(0),
            }
            if self.got[..n] != self.expected[..n] {
                let first = (0..n)
                    .find(|i| self.got[*i] != self.expected[*i])
                    .expect("they differ");
                return Err(format!(
                    "content differs from the staged copy at byte {}",
                    self.at + first as u64
                ));
            }
            self.at += n as u64;
        }
        Ok(())
    }
}

/// A time as ext4 stores it: the low 32 bits signed in the base field,
/// and in the extra field two epoch bits extending it to 34 bits (the
/// nanoseconds, zero here, above them).
fn put_time(raw: &mut [u8], seconds: usize, extra_field: usize, extra: usize, t: i64) {
    put32(raw, seconds, t as i32 as u32);
    if extra_field + 4 <= format::GOOD_OLD_INODE_SIZE + extra {
        let epoch = ((t - i64::from(t as i32)) >> 32) & 3;
        put32(raw, extra_field, epoch as u32);
    }
}

/// A device number in `i_block`, as `fs/ext4/inode.c` writes it: the
/// old 16-bit encoding in the first word when major and minor fit a byte
/// each, else the new 32-bit one in the second.
fn encode_device(raw: &mut [u8], major: u32, minor: u32) {
    raw[inode::BLOCK..inode::BLOCK + inode::BLOCK_LEN].fill(0);
    if major < 256 && minor < 256 {
        put32(raw, inode::BLOCK, (major << 8) | minor);
    } else {
        let new = (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12);
        put32(raw, inode::BLOCK + 4, new);
    }
}

/// The fields where `found` differs from `want`, for an error message.
fn describe(found: &[u8], want: &[u8]) -> String {
    let fields: [(&str, usize, usize); 8] = [
        ("mode", inode::MODE, 2),
        ("uid", inode::UID, 2),
        ("uid (high half)", inode::UID_HIGH, 2),
        ("gid", inode::GID, 2),
        ("gid (high half)", inode::GID_HIGH, 2),
        ("mtime", inode::MTIME, 4),
        ("flags", inode::FLAGS, 4),
        ("device or extents", inode::BLOCK, inode::BLOCK_LEN),
    ];
    let differs: Vec<String> = fields
        .iter()
        .filter(|(_, at, len)| found[*at..at + len] != want[*at..at + len])
        .map(|(name, at, len)| match (*name, len) {
            ("mode", _) => format!(
                "mode {:o}, expected {:o}",
                le16(found, *at),
                le16(want, *at)
            ),
            (_, 2) => format!("{name} {}, expected {}", le16(found, *at), le16(want, *at)),
            (_, 4) => format!("{name} {}, expected {}", le32(found, *at), le32(want, *at)),
            _ => name.to_string(),
        })
        .collect();
    if differs.is_empty() {
        "times, xattrs or the inode checksum".to_string()
    } else {
        differs.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_mke2fs_older_than_1_47_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let fake = |version: &str| {
            let path = dir.path().join(format!("mke2fs-{version}"));
            std::fs::write(
                &path,
                format!("#!/bin/sh\necho 'mke2fs {version} (30-Dec-2021)' >&2\n"),
            )
            .unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            path
        };
        let err = check_mke2fs_version(&fake("1.46.5")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("the build host's mke2fs is e2fsprogs 1.46.5; 1.47.0 or later"),
            "{err}"
        );
        check_mke2fs_version(&fake("1.47.0")).unwrap();
        check_mke2fs_version(&fake("1.48")).unwrap();
        check_mke2fs_version(&find_mke2fs().unwrap()).unwrap();
    }
}
