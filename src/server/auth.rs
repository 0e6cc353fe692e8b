//! Access control: A1111's `--api-auth user:pass[,user2:pass2]` (HTTP Basic) and/or an API key sent as
//! `Authorization: Bearer KEY` (or `X-API-Key: KEY`). `/health` stays open for load balancers.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;

use super::error::ApiError;

#[derive(Clone, Debug, Default)]
pub struct Auth {
    /// Accepted (user, password) pairs.
    pub basic: Vec<(String, String)>,
    pub key: Option<String>,
}

impl Auth {
    /// From the command line; None when neither is given. Each `--api-auth` entry must be `user:pass`.
    pub fn from_args(api_auth: Option<&str>, api_key: Option<&str>) -> Result<Option<Auth>, String> {
        let mut basic = Vec::new();
        if let Some(list) = api_auth {
            for pair in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                match pair.split_once(':') {
                    Some((u, p)) if !u.is_empty() && !p.is_empty() => basic.push((u.to_string(), p.to_string())),
                    _ => return Err(format!("--api-auth: '{pair}' is not user:password")),
                }
            }
            if basic.is_empty() {
                return Err("--api-auth: no user:password given".into());
            }
        }
        if api_key.is_some_and(|k| k.trim().is_empty()) {
            return Err("--api-key: the key is empty".into());
        }
        let key = api_key.map(|k| k.trim().to_string());
        Ok((!basic.is_empty() || key.is_some()).then_some(Auth { basic, key }))
    }

    /// Whether the request's headers carry an accepted credential.
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        let authz = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
        if let Some(key) = &self.key {
            let given = authz.strip_prefix("Bearer ").or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()));
            if given.is_some_and(|g| same(g.trim().as_bytes(), key.as_bytes())) {
                return true;
            }
        }
        if let Some(b64) = authz.strip_prefix("Basic ") {
            if let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) {
                if let Some((u, p)) = String::from_utf8_lossy(&raw).split_once(':') {
                    // Check every pair (no early exit) so timing does not tell which user exists.
                    let mut ok = false;
                    for (bu, bp) in &self.basic {
                        ok |= same(u.as_bytes(), bu.as_bytes()) & same(p.as_bytes(), bp.as_bytes());
                    }
                    return ok;
                }
            }
        }
        false
    }
}

/// Constant-time comparison of two secrets (the length may leak; the content does not).
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The middleware: 401 with a `WWW-Authenticate` challenge when the credential is missing or wrong.
pub async fn require(State(auth): State<Option<Auth>>, req: Request, next: Next) -> Response {
    match &auth {
        Some(a) if !a.allows(req.headers()) => {
            let mut r = ApiError::new(StatusCode::UNAUTHORIZED, "authentication required: HTTP Basic (--api-auth) or Authorization: Bearer <key> (--api-key)").into_response();
            if !a.basic.is_empty() {
                r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"wgsd\""));
            }
            r
        }
        _ => next.run(req).await,
    }
}
