//! The compressors a squashfs image may name in its superblock, as the
//! Linux kernel reads them (fs/squashfs/{zstd,xz,zlib}_wrapper.c) and
//! squashfs-tools writes them (zstd_wrapper.c, xz_wrapper.c,
//! gzip_wrapper.c): one independent stream per data block, fragment block
//! or 8 KiB metadata block, no dictionary shared between blocks.
//!
//! A block whose compressed form is not smaller than itself is stored
//! raw (the caller flags it), so [`Codec::compress`] says "no gain" with
//! `None` rather than returning a larger buffer.

use std::io::Write;

use super::{Compression, SquashfsError};

/// Compressor ids of the superblock (squashfs_fs.h).
pub(super) const ZLIB_ID: u16 = 1;
pub(super) const XZ_ID: u16 = 4;
pub(super) const ZSTD_ID: u16 = 6;

/// squashfs-tools' defaults: a level or dictionary equal to these is not
/// written as a compression-options block (mksquashfs writes none then).
pub const ZSTD_DEFAULT_LEVEL: i32 = 15;
pub const GZIP_DEFAULT_LEVEL: u32 = 9;
/// zlib window bits squashfs-tools uses (and the kernel expects).
const GZIP_WINDOW_BITS: u16 = 15;
/// xz preset squashfs-tools starts from (LZMA_PRESET_DEFAULT).
const XZ_PRESET: u32 = 6;

impl Compression {
    pub(super) fn id(self) -> u16 {
        match self {
            Compression::Zstd { .. } => ZSTD_ID,
            Compression::Xz => XZ_ID,
            Compression::Gzip { .. } => ZLIB_ID,
        }
    }

    pub(super) fn check(self) -> Result<(), SquashfsError> {
        let ok = match self {
            Compression::Zstd { level } => (1..=22).contains(&level),
            Compression::Gzip { level } => (1..=9).contains(&level),
            Compression::Xz => true,
        };
        if ok {
            Ok(())
        } else {
            Err(SquashfsError::Level(self))
        }
    }

    /// The compression-options block (stored after the superblock when
    /// the `COMP_OPT` flag is set), or `None` when squashfs-tools'
    /// defaults apply. Layouts from squashfs-tools' *_wrapper.h.
    pub(super) fn options_block(self) -> Option<Vec<u8>> {
        match self {
            Compression::Zstd { level } if level != ZSTD_DEFAULT_LEVEL => {
                Some((level as u32).to_le_bytes().to_vec())
            }
            Compression::Gzip { level } if level != GZIP_DEFAULT_LEVEL => {
                let mut b = level.to_le_bytes().to_vec();
                b.extend_from_slice(&GZIP_WINDOW_BITS.to_le_bytes());
                b.extend_from_slice(&0u16.to_le_bytes()); // strategies: default only
                Some(b)
            }
            // The xz dictionary is the block size, its default.
            _ => None,
        }
    }
}

/// One thread's compressor and decompressor state, reused across blocks.
pub(super) struct Codec {
    compression: Compression,
    block_size: u32,
    zstd_c: Option<zstd::bulk::Compressor<'static>>,
    zstd_d: Option<zstd::bulk::Decompressor<'static>>,
}

impl Codec {
    pub(super) fn new(compression: Compression, block_size: u32) -> Codec {
        Codec {
            compression,
            block_size,
            zstd_c: None,
            zstd_d: None,
        }
    }

    /// `data` compressed, or `None` if that is not smaller than `data`.
    pub(super) fn compress(&mut self, data: &[u8]) -> Result<Option<Vec<u8>>, SquashfsError> {
        let failed = |e: std::io::Error| SquashfsError::Compress(e.to_string());
        let out = match self.compression {
            Compression::Zstd { level } => {
                let c = match &mut self.zstd_c {
                    Some(c) => c,
                    empty => empty.insert(zstd::bulk::Compressor::new(level).map_err(failed)?),
                };
                let mut out = Vec::with_capacity(data.len());
                match c.compress_to_buffer(data, &mut out) {
                    Ok(_) => out,
                    // Does not fit in `data.len()` bytes: no gain.
                    Err(_) => return Ok(None),
                }
            }
            Compression::Gzip { level } => {
                let mut e = flate2::write::ZlibEncoder::new(
                    Vec::with_capacity(data.len()),
                    flate2::Compression::new(level),
                );
                e.write_all(data).map_err(failed)?;
                e.finish().map_err(failed)?
            }
            Compression::Xz => xz_compress(data, self.block_size)?,
        };
        Ok((out.len() < data.len()).then_some(out))
    }

    /// Decompresses `data` into `out` (cleared first); `max` is the most
    /// the block may hold (the block size, or 8 KiB for metadata).
    pub(super) fn decompress(
        &mut self,
        data: &[u8],
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<(), String> {
        out.clear();
        match self.compression {
            Compression::Zstd { .. } => {
                let d = match &mut self.zstd_d {
                    Some(d) => d,
                    empty => {
                        empty.insert(zstd::bulk::Decompressor::new().map_err(|e| e.to_string())?)
                    }
                };
                out.reserve(max);
                d.decompress_to_buffer(data, out)
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
            Compression::Gzip { .. } => {
                let mut d = flate2::write::ZlibDecoder::new(std::mem::take(out));
                d.write_all(data).map_err(|e| e.to_string())?;
                *out = d.finish().map_err(|e| e.to_string())?;
                Ok(())
            }
            Compression::Xz => {
                let mut s = liblzma::stream::Stream::new_stream_decoder(u64::MAX, 0)
                    .map_err(|e| e.to_string())?;
                out.reserve(max + 1);
                match s.process_vec(data, out, liblzma::stream::Action::Finish) {
                    Ok(liblzma::stream::Status::StreamEnd) => Ok(()),
                    Ok(_) => Err("xz stream truncated or larger than a block".into()),
                    Err(e) => Err(e.to_string()),
                }
            }
        }?;
        if out.len() > max {
            return Err(format!(
                "block decompresses to {} bytes, over {max}",
                out.len()
            ));
        }
        Ok(())
    }
}

/// An .xz stream with one LZMA2 filter whose dictionary is the block
/// size and a CRC32 check, as squashfs-tools' xz_wrapper.c writes: the
/// kernel's xz decoder is set up for that dictionary (no larger) and
/// verifies CRC32 (it has no SHA-256).
fn xz_compress(data: &[u8], block_size: u32) -> Result<Vec<u8>, SquashfsError> {
    use liblzma::stream::{Action, Check, Filters, LzmaOptions, Status, Stream};
    let failed = |e: liblzma::stream::Error| SquashfsError::Compress(e.to_string());
    let mut opts = LzmaOptions::new_preset(XZ_PRESET).map_err(failed)?;
    opts.dict_size(block_size);
    let mut filters = Filters::new();
    filters.lzma2(&opts);
    let mut s = Stream::new_stream_encoder(&filters, Check::Crc32).map_err(failed)?;
    let mut out = Vec::with_capacity(data.len() + data.len() / 16 + 128);
    loop {
        let consumed = s.total_in() as usize;
        match s
            .process_vec(&data[consumed..], &mut out, Action::Finish)
            .map_err(failed)?
        {
            Status::StreamEnd => return Ok(out),
            _ => out.reserve(out.capacity().max(4096)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_codec_round_trips_and_declines_incompressible_data() {
        let text: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let mut noise = vec![0u8; 65536];
        let mut x = 0x9e3779b97f4a7c15u64;
        for b in &mut noise {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        for c in [
            Compression::Zstd { level: 3 },
            Compression::Xz,
            Compression::Gzip { level: 9 },
        ] {
            let mut codec = Codec::new(c, 1 << 20);
            let packed = codec.compress(&text).unwrap().expect("text compresses");
            let mut out = Vec::new();
            codec.decompress(&packed, &mut out, 1 << 20).unwrap();
            assert_eq!(out, text, "{c:?}");
            assert!(codec.compress(&noise).unwrap().is_none(), "{c:?}");
            assert!(codec.decompress(&packed, &mut out, 1000).is_err(), "{c:?}");
        }
    }
}
