//! `GET /v2/<name>/tags/list` and `GET /v2/_catalog`, with the spec's
//! pagination: `n` (page size) and `last` (answer entries after this one),
//! and a `Link: <...>; rel="next"` header when more remain.

use axum::extract::Request;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use ferry_store::StoreError;

use super::{param, query, value};
use crate::error::Result;
use crate::{Registry, blocking};

pub async fn list(registry: Registry, name: &str, request: Request) -> Result<Response> {
    let store = registry.store.clone();
    let repo = name.to_string();
    let Some(tags) = blocking(move || store.tags(&repo)).await? else {
        return Err(StoreError::NameUnknown(name.to_string()).into());
    };
    let params = query(request.uri());
    let (page, next) = paginate(tags, &params);
    let mut response = axum::Json(serde_json::json!({"name": name, "tags": page})).into_response();
    if let Some((last, n)) = next {
        let link = format!("</v2/{name}/tags/list?n={n}&last={last}>; rel=\"next\"");
        response.headers_mut().insert(header::LINK, value(&link));
    }
    Ok(response)
}

pub async fn catalog(registry: Registry, request: Request) -> Result<Response> {
    let store = registry.store.clone();
    let repositories = blocking(move || store.repositories()).await?;
    let params = query(request.uri());
    let (page, next) = paginate(repositories, &params);
    let mut response = axum::Json(serde_json::json!({"repositories": page})).into_response();
    if let Some((last, n)) = next {
        let link = format!("</v2/_catalog?n={n}&last={last}>; rel=\"next\"");
        response.headers_mut().insert(header::LINK, value(&link));
    }
    Ok(response)
}

/// One page of a sorted list, and the `(last, n)` of the next page if any.
fn paginate(
    sorted: Vec<String>,
    params: &[(String, String)],
) -> (Vec<String>, Option<(String, usize)>) {
    let after: Vec<String> = match param(params, "last") {
        Some(last) => sorted.into_iter().filter(|t| t.as_str() > last).collect(),
        None => sorted,
    };
    match param(params, "n").and_then(|n| n.parse::<usize>().ok()) {
        Some(n) if n < after.len() => {
            let page: Vec<String> = after.into_iter().take(n).collect();
            let next = page.last().map(|last| (last.clone(), n));
            (page, next)
        }
        _ => (after, None),
    }
}

#[cfg(test)]
mod tests {
    use super::paginate;

    fn p(list: &[&str], params: &[(&str, &str)]) -> (Vec<String>, Option<(String, usize)>) {
        let list = list.iter().map(|s| s.to_string()).collect();
        let params: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        paginate(list, &params)
    }

    #[test]
    fn pages() {
        let all = ["a", "b", "c", "d"];
        assert_eq!(p(&all, &[]).0.len(), 4);
        assert_eq!(
            p(&all, &[("n", "2")]),
            (vec!["a".into(), "b".into()], Some(("b".into(), 2)))
        );
        assert_eq!(
            p(&all, &[("n", "2"), ("last", "b")]),
            (vec!["c".into(), "d".into()], None)
        );
        assert_eq!(p(&all, &[("last", "c")]).0, vec!["d".to_string()]);
        assert_eq!(p(&all, &[("n", "0")]), (vec![], None));
        assert_eq!(p(&all, &[("n", "9")]).1, None);
    }
}
