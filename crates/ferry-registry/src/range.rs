//! `Range` and `Content-Range` headers.
//!
//! Blob GETs honour one byte range (RFC 9110 §14.1.2, §14.2), parsed by
//! the `http-range-header` crate (what tower-http uses) behind
//! [`answer`], which adds the rules ferry's two HTTP servers share (the
//! netboot file server has the same adapter over the same crate):
//! - a suffix longer than the blob is the whole blob (§14.1.2);
//! - a range whose last byte precedes its first (§14.1.1: invalid), a
//!   zero-length suffix, or one that starts past the end is answered 416
//!   with `Content-Range: bytes */LEN` (§15.5.17) — the OCI conformance
//!   suite expects 416 for "range 500-0";
//! - several ranges, or a header that does not parse, get the whole blob
//!   with 200, which §14.2 allows ("a server MAY ignore the Range header").
//!
//! Upload PATCHes carry the distribution-spec's own
//! `Content-Range: <start>-<end>` (inclusive, no unit), parsed here by
//! [`parse_content_range`].

use http_range_header::{EndPosition, RangeUnsatisfiableError, StartPosition};

/// What to send for a `Range` request on a resource of `size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeAnswer {
    /// No (usable) range: 200 with everything.
    Full,
    /// 206 with bytes `start..=end`.
    Partial { start: u64, end: u64 },
    /// 416.
    Unsatisfiable,
}

pub fn answer(header: Option<&str>, size: u64) -> RangeAnswer {
    let Some(value) = header.map(str::trim) else {
        return RangeAnswer::Full;
    };
    // The unit is case-insensitive (§14.1); the crate wants `bytes=`.
    let value = match value.get(..6) {
        Some(unit) if unit.eq_ignore_ascii_case("bytes=") => format!("bytes={}", &value[6..]),
        _ => return RangeAnswer::Full,
    };
    let range = match http_range_header::parse_range_header(&value) {
        Ok(parsed) => match parsed.ranges.as_slice() {
            [one] => *one,
            _ => return RangeAnswer::Full,
        },
        Err(RangeUnsatisfiableError::ZeroSuffix) => return RangeAnswer::Unsatisfiable,
        Err(_) => return RangeAnswer::Full,
    };
    let (start, end) = match (range.start, range.end) {
        (StartPosition::FromLast(n), _) => (size.saturating_sub(n), u64::MAX),
        (StartPosition::Index(first), EndPosition::LastByte) => (first, u64::MAX),
        (StartPosition::Index(first), EndPosition::Index(last)) if last < first => {
            return RangeAnswer::Unsatisfiable;
        }
        (StartPosition::Index(first), EndPosition::Index(last)) => (first, last),
    };
    if start >= size {
        return RangeAnswer::Unsatisfiable;
    }
    RangeAnswer::Partial {
        start,
        end: end.min(size - 1),
    }
}

/// Parses an upload chunk's `Content-Range: <start>-<end>` (also accepting
/// a `bytes ` or `bytes=` prefix, which some clients send).
pub fn parse_content_range(value: &str) -> Option<(u64, u64)> {
    let v = value.trim();
    let v = v
        .strip_prefix("bytes ")
        .or_else(|| v.strip_prefix("bytes="))
        .unwrap_or(v);
    let v = v.split('/').next()?;
    let (start, end) = v.split_once('-')?;
    let (start, end) = (start.trim().parse().ok()?, end.trim().parse().ok()?);
    (end >= start).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use RangeAnswer::*;

    #[test]
    fn ranges() {
        assert_eq!(answer(None, 10), Full);
        assert_eq!(answer(Some("bytes=0-4"), 10), Partial { start: 0, end: 4 });
        assert_eq!(answer(Some("bytes=5-"), 10), Partial { start: 5, end: 9 });
        assert_eq!(
            answer(Some("bytes=5-100"), 10),
            Partial { start: 5, end: 9 }
        );
        assert_eq!(answer(Some("bytes=-3"), 10), Partial { start: 7, end: 9 });
        assert_eq!(answer(Some("bytes=-30"), 10), Partial { start: 0, end: 9 });
        assert_eq!(answer(Some("bytes=10-"), 10), Unsatisfiable);
        assert_eq!(answer(Some("bytes=10-20"), 10), Unsatisfiable);
        assert_eq!(answer(Some("bytes=-0"), 10), Unsatisfiable);
        assert_eq!(answer(Some("bytes=0-1,3-4"), 10), Full);
        assert_eq!(answer(Some("bytes=4-2"), 10), Unsatisfiable);
        assert_eq!(answer(Some("bytes=500-0"), 2048), Unsatisfiable);
        assert_eq!(answer(Some("items=0-1"), 10), Full);
        assert_eq!(answer(Some("bytes=x-1"), 10), Full);
        assert_eq!(answer(Some("bytes=0-"), 0), Unsatisfiable);
        assert_eq!(answer(Some("BYTES=1-1"), 10), Partial { start: 1, end: 1 });
        assert_eq!(answer(Some("bytes=0-5,3-4"), 10), Full);
        assert_eq!(answer(Some("bytes="), 10), Full);
    }

    #[test]
    fn content_ranges() {
        assert_eq!(parse_content_range("0-99"), Some((0, 99)));
        assert_eq!(parse_content_range("bytes 100-199/*"), Some((100, 199)));
        assert_eq!(parse_content_range("5-4"), None);
        assert_eq!(parse_content_range("x"), None);
    }
}
