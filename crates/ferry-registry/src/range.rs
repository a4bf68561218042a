//! `Range` and `Content-Range` headers.
//!
//! Blob GETs honour one byte range (RFC 9110 §14.2): `bytes=a-b`,
//! `bytes=a-`, `bytes=-n`. A multi-range request is answered with the
//! whole blob, which RFC 9110 allows ("a server MAY ignore the Range
//! header field"). A range whose last byte precedes its first is invalid
//! (§14.1.1) and is rejected with 416, which §14.2 allows and the OCI
//! conformance suite expects ("range 500-0"), rather than silently
//! answered with the whole blob. Upload PATCHes carry the
//! distribution-spec's `Content-Range: <start>-<end>` (inclusive, no unit).

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
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeAnswer::Full;
    };
    if spec.contains(',') {
        return RangeAnswer::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeAnswer::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    let parse = |s: &str| s.parse::<u64>().ok();
    match (first.is_empty(), last.is_empty()) {
        // bytes=-n: the last n bytes.
        (true, false) => match parse(last) {
            None => RangeAnswer::Full,
            Some(0) => RangeAnswer::Unsatisfiable,
            Some(_) if size == 0 => RangeAnswer::Unsatisfiable,
            Some(n) => RangeAnswer::Partial {
                start: size.saturating_sub(n),
                end: size - 1,
            },
        },
        (false, _) => {
            let Some(start) = parse(first) else {
                return RangeAnswer::Full;
            };
            let end = if last.is_empty() {
                Some(u64::MAX)
            } else {
                parse(last)
            };
            match end {
                None => RangeAnswer::Full,
                Some(end) if end < start => RangeAnswer::Unsatisfiable,
                Some(_) if start >= size => RangeAnswer::Unsatisfiable,
                Some(end) => RangeAnswer::Partial {
                    start,
                    end: end.min(size - 1),
                },
            }
        }
        (true, true) => RangeAnswer::Full,
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
    }

    #[test]
    fn content_ranges() {
        assert_eq!(parse_content_range("0-99"), Some((0, 99)));
        assert_eq!(parse_content_range("bytes 100-199/*"), Some((100, 199)));
        assert_eq!(parse_content_range("5-4"), None);
        assert_eq!(parse_content_range("x"), None);
    }
}
