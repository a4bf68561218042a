//! Builds the raw disk from a rootfs tar with ferry's writer, for
//! benchmarks (no CLI surface in `ferry` for it yet):
//!
//!     cargo run --release -p ferry-image --example disk -- ROOTFS.tar OUT.raw \
//!         [--stage DIR] [--size BYTES] [--free BYTES]
//!
//! The tar is applied to a fresh stage (default: OUT.stage, removed
//! afterwards), then the disk is written and read back. The tar must hold
//! a kernel, an initramfs and GRUB for BIOS and UEFI. Prints one line per
//! phase, `phase<TAB>seconds`, then the report.

use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;
use std::time::Instant;

use ferry_image::boot::kernel;
use ferry_image::output::disk::{self, DiskOptions};
use ferry_image::rootfs::{Rootfs, layer};
use ferry_oci::progress::NoProgress;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: disk ROOTFS.tar OUT.raw [--stage DIR] [--size BYTES] [--free BYTES]";
    let tar = PathBuf::from(args.next().ok_or(usage)?);
    let out = PathBuf::from(args.next().ok_or(usage)?);
    let mut stage = out.with_extension("stage");
    let mtime = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(epoch) => epoch.parse()?,
        Err(_) => 0,
    };
    let mut options = DiskOptions {
        size: None,
        free: 1 << 30,
        cmdline_extra: String::new(),
        identity: tar.display().to_string(),
        mtime,
    };
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(usage);
        match flag.as_str() {
            "--stage" => stage = PathBuf::from(value()?),
            "--size" => options.size = Some(value()?.parse()?),
            "--free" => options.free = value()?.parse()?,
            _ => return Err(usage.into()),
        }
    }

    let t = Instant::now();
    let _ = std::fs::remove_dir_all(&stage);
    let mut rootfs = Rootfs::new(stage.clone(), mtime)?;
    layer::apply(
        &mut rootfs,
        BufReader::new(File::open(&tar)?),
        "rootfs.tar",
        mtime,
    )?;
    println!("apply\t{:.3}", t.elapsed().as_secs_f64());

    let t = Instant::now();
    let kernel = kernel::find(rootfs.tree())?;
    let work = out.with_extension("work");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let report = disk::write(&mut rootfs, &kernel, &options, &out, &work, &NoProgress)?;
    println!("write+verify\t{:.3}", t.elapsed().as_secs_f64());
    std::fs::remove_dir_all(&work)?;
    std::fs::remove_dir_all(&stage)?;
    println!(
        "size {} root {} uuid {} inode size {} inodes fixed {} devices {} acls {} skipped xattrs {}",
        report.size,
        report.root_size,
        report.root_uuid,
        report.inode_size,
        report.fixup.inodes,
        report.fixup.devices,
        report.fixup.acls,
        report.fixup.skipped_xattrs.len()
    );
    Ok(())
}
