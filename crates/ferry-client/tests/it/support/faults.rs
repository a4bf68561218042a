//! A fault-injecting layer in front of ferry's registry, and a listener
//! that drops connections: the network misbehaving, the registry real.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

/// What to do to matching requests, a limited number of times.
pub enum Fault {
    /// Answer with this status (and `Retry-After: 0`) without reaching
    /// the registry.
    Status(StatusCode),
    /// Let only the first N bytes of the request body reach the registry,
    /// then cut it and answer 502, as a failing proxy would.
    CutRequestBody(u64),
    /// Send only the first N bytes of the registry's response body, then
    /// abort the connection.
    TruncateResponse(u64),
}

struct Rule {
    method: Method,
    path_contains: String,
    fault: Fault,
    /// Matching requests to let through before the fault applies.
    skip: u32,
    times: u32,
}

/// One request as seen by the layer.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub uri: String,
    pub range: Option<String>,
    pub content_range: Option<String>,
    pub content_length: Option<String>,
    pub transfer_encoding: Option<String>,
    /// The status the client got (before any truncation).
    pub status: u16,
    /// Request body bytes that reached the registry.
    pub body_received: u64,
}

#[derive(Default)]
pub struct Faults {
    rules: Mutex<Vec<Rule>>,
    pub seen: Mutex<Vec<Seen>>,
    /// Request body bytes that reached the registry.
    pub body_bytes_in: Arc<AtomicU64>,
}

impl Faults {
    /// Applies `fault` to `times` requests whose method is `method` and
    /// whose path contains `path_contains`, after letting `skip` through.
    pub fn add(&self, method: Method, path_contains: &str, skip: u32, times: u32, fault: Fault) {
        self.rules.lock().unwrap().push(Rule {
            method,
            path_contains: path_contains.to_string(),
            fault,
            skip,
            times,
        });
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn take(&self, method: &Method, path: &str) -> Option<Fault> {
        let mut rules = self.rules.lock().unwrap();
        let rule = rules.iter_mut().find(|r| {
            r.method == method && path.contains(&r.path_contains) && (r.skip > 0 || r.times > 0)
        })?;
        if rule.skip > 0 {
            rule.skip -= 1;
            return None;
        }
        rule.times -= 1;
        Some(match rule.fault {
            Fault::Status(s) => Fault::Status(s),
            Fault::CutRequestBody(n) => Fault::CutRequestBody(n),
            Fault::TruncateResponse(n) => Fault::TruncateResponse(n),
        })
    }

    /// Wraps the registry's router.
    pub fn layer(self: &Arc<Self>, router: Router) -> Router {
        router.layer(axum::middleware::from_fn_with_state(self.clone(), inject))
    }
}

fn header(request: &Request, name: &str) -> Option<String> {
    request
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// A stream of at most `limit` bytes of `body`, then an error if there was
/// more; `counters` add up what passed.
fn cut(body: Body, limit: u64, counters: Vec<Arc<AtomicU64>>) -> Body {
    let stream = body.into_data_stream();
    Body::from_stream(futures_util::stream::unfold(
        (stream, 0u64, false),
        move |(mut stream, passed, done)| {
            let counters = counters.clone();
            async move {
                if done {
                    return None;
                }
                match stream.next().await {
                    None => None,
                    Some(Err(e)) => Some((Err(std::io::Error::other(e)), (stream, passed, true))),
                    Some(Ok(mut bytes)) => {
                        if passed >= limit {
                            let e = std::io::Error::other("cut by the fault layer");
                            return Some((Err(e), (stream, passed, true)));
                        }
                        bytes.truncate((limit - passed).min(bytes.len() as u64) as usize);
                        for c in &counters {
                            c.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                        }
                        let passed = passed + bytes.len() as u64;
                        Some((Ok(bytes), (stream, passed, false)))
                    }
                }
            }
        },
    ))
}

async fn inject(State(faults): State<Arc<Faults>>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let mut seen = Seen {
        method: method.clone(),
        uri: request.uri().to_string(),
        range: header(&request, "range"),
        content_range: header(&request, "content-range"),
        content_length: header(&request, "content-length"),
        transfer_encoding: header(&request, "transfer-encoding"),
        status: 0,
        body_received: 0,
    };
    let received = Arc::new(AtomicU64::new(0));
    let counters = vec![faults.body_bytes_in.clone(), received.clone()];
    let fault = faults.take(&method, &path);
    let (parts, body) = request.into_parts();
    let response = match fault {
        Some(Fault::Status(status)) => {
            let mut r = (status, "injected fault").into_response();
            r.headers_mut()
                .insert("retry-after", HeaderValue::from_static("0"));
            r
        }
        Some(Fault::CutRequestBody(n)) => {
            let request = Request::from_parts(parts, cut(body, n, counters));
            drop(next.run(request).await);
            (StatusCode::BAD_GATEWAY, "upstream connection lost").into_response()
        }
        Some(Fault::TruncateResponse(n)) => {
            let request = Request::from_parts(parts, cut(body, u64::MAX, counters));
            let response = next.run(request).await;
            let (parts, body) = response.into_parts();
            Response::from_parts(parts, cut(body, n, Vec::new()))
        }
        None => {
            let request = Request::from_parts(parts, cut(body, u64::MAX, counters));
            next.run(request).await
        }
    };
    seen.status = response.status().as_u16();
    seen.body_received = received.load(Ordering::Relaxed);
    faults.seen.lock().unwrap().push(seen);
    response
}

/// A listener that closes the first `drop_first` connections unanswered.
pub struct DroppingListener {
    pub inner: tokio::net::TcpListener,
    pub drop_first: u32,
    pub dropped: Arc<AtomicU32>,
}

impl axum::serve::Listener for DroppingListener {
    type Io = tokio::net::TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, addr)) = self.inner.accept().await else {
                continue;
            };
            if self.dropped.load(Ordering::Relaxed) < self.drop_first {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                drop(stream);
                continue;
            }
            return (stream, addr);
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}
