//! Retries of transient failures ([`is_transient_status`],
//! [`crate::TransportKind::is_transient`]): exponential backoff with full jitter
//! (each wait is uniform in `[0, min(max_delay, base * 2^attempt)]`, which
//! spreads out many clients that failed together), overridden by the
//! server's `Retry-After` (RFC 9110 §10.2.3: seconds or an HTTP date) when
//! it sends one.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, StatusCode};

/// How often and how patiently to retry.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0 disables retrying).
    pub max_retries: u32,
    /// Upper bound of the first wait.
    pub base_delay: Duration,
    /// Cap of any computed wait.
    pub max_delay: Duration,
    /// Cap of a server's `Retry-After`, so a hostile or confused server
    /// cannot park the client for hours.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 6,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `attempt` (0-based), given the
    /// failed response's headers if there was a response.
    pub fn delay(&self, attempt: u32, headers: Option<&HeaderMap>) -> Duration {
        if let Some(after) = headers.and_then(retry_after) {
            return after.min(self.max_retry_after);
        }
        let exp = self
            .base_delay
            .saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX));
        let cap = exp.min(self.max_delay);
        cap.mul_f64(random_unit())
    }
}

/// True for statuses worth retrying: 408, 429 and 5xx, except those that
/// will not change within a few seconds of backoff: 501 (not
/// implemented), 505 (HTTP version) and 507 (Insufficient Storage, RFC
/// 4918 §11.5: the registry's disk is full; retrying only repeats the
/// refusal until someone frees space, so the client reports it at once).
pub fn is_transient_status(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || (status.is_server_error()
            && status != StatusCode::NOT_IMPLEMENTED
            && status != StatusCode::HTTP_VERSION_NOT_SUPPORTED
            && status != StatusCode::INSUFFICIENT_STORAGE)
}

/// Parses `Retry-After`: delta-seconds or an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// A uniform random number in [0, 1) from the OS's generator (jitter does
/// not need a seeded PRNG, and this avoids one more dependency).
fn random_unit() -> f64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_are_bounded_and_honor_retry_after() {
        let p = RetryPolicy {
            max_retries: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            max_retry_after: Duration::from_secs(5),
        };
        for attempt in 0..40 {
            let d = p.delay(attempt, None);
            assert!(d <= Duration::from_secs(1), "{d:?}");
            assert!(d <= Duration::from_millis(100) * 2u32.pow(attempt.min(10)));
        }
        let mut h = HeaderMap::new();
        h.insert(http::header::RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(p.delay(0, Some(&h)), Duration::from_secs(3));
        h.insert(http::header::RETRY_AFTER, "3600".parse().unwrap());
        assert_eq!(p.delay(0, Some(&h)), Duration::from_secs(5));
        let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(2));
        h.insert(http::header::RETRY_AFTER, date.parse().unwrap());
        assert!(p.delay(0, Some(&h)) <= Duration::from_secs(2));
        h.insert(http::header::RETRY_AFTER, "soon".parse().unwrap());
        assert!(p.delay(0, Some(&h)) <= Duration::from_millis(100));
    }

    #[test]
    fn transient_statuses() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(is_transient_status(StatusCode::from_u16(s).unwrap()), "{s}");
        }
        for s in [400, 401, 403, 404, 416, 501, 505, 507] {
            assert!(
                !is_transient_status(StatusCode::from_u16(s).unwrap()),
                "{s}"
            );
        }
    }
}
