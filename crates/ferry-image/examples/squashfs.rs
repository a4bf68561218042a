//! Builds a squashfs image from a rootfs tar with ferry's writer, for
//! bench/image.sh (no CLI surface in `ferry` for it):
//!
//!     cargo run --release -p ferry-image --example squashfs -- ROOTFS.tar OUT.squashfs \
//!         [--stage DIR] [--processors N] [--level N] [--block-size BYTES] [--xz|--gzip]
//!
//! The tar is applied to a fresh stage (default: OUT.stage, removed
//! afterwards), then the image is written and verified. Prints one line
//! per phase, `phase<TAB>seconds`, then the report.

use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;
use std::time::Instant;

use ferry_image::output::squashfs::{self, Compression, SquashfsOptions};
use ferry_image::rootfs::{Rootfs, layer};
use ferry_oci::progress::NoProgress;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: squashfs ROOTFS.tar OUT [--stage DIR] [--processors N] [--level N] [--block-size BYTES] [--xz|--gzip]";
    let tar = PathBuf::from(args.next().ok_or(usage)?);
    let out = PathBuf::from(args.next().ok_or(usage)?);
    let mut stage = out.with_extension("stage");
    let mut options = SquashfsOptions::default();
    let mut level = None;
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(usage);
        match flag.as_str() {
            "--stage" => stage = PathBuf::from(value()?),
            "--processors" => options.processors = value()?.parse()?,
            "--level" => level = Some(value()?.parse::<i32>()?),
            "--block-size" => options.block_size = value()?.parse()?,
            "--xz" => options.compression = Compression::Xz,
            "--gzip" => options.compression = Compression::Gzip { level: 9 },
            _ => return Err(usage.into()),
        }
    }
    if let Some(level) = level {
        options.compression = match options.compression {
            Compression::Zstd { .. } => Compression::Zstd { level },
            Compression::Gzip { .. } => Compression::Gzip {
                level: level as u32,
            },
            Compression::Xz => Compression::Xz,
        };
    }
    if let Ok(epoch) = std::env::var("SOURCE_DATE_EPOCH") {
        options.mkfs_time = epoch.parse()?;
    }

    let t = Instant::now();
    let _ = std::fs::remove_dir_all(&stage);
    let mut rootfs = Rootfs::new(stage.clone(), 0)?;
    layer::apply(
        &mut rootfs,
        BufReader::new(File::open(&tar)?),
        "rootfs.tar",
        0,
    )?;
    println!("apply\t{:.3}", t.elapsed().as_secs_f64());

    let t = Instant::now();
    let report = squashfs::write(&rootfs, &out, &options, &NoProgress)?;
    println!("write\t{:.3}", t.elapsed().as_secs_f64());

    let t = Instant::now();
    squashfs::verify(&out, &rootfs)?;
    println!("verify\t{:.3}", t.elapsed().as_secs_f64());
    println!("{report:?}");
    std::fs::remove_dir_all(&stage)?;
    Ok(())
}
