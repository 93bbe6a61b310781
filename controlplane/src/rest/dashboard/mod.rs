//! `/dashboard/`: the live picture of the cluster, three static files compiled into the binary
//! (`index.html`, `app.js`, `style.css`). They carry no cluster data, so they are served
//! before authentication (as kube-apiserver's `/version` for system:public-info-viewer); the
//! page reads everything through the ordinary REST list+watch with the user's bearer token.

use bytes::Bytes;
use http::{header, HeaderValue, Method, Response, StatusCode};

use super::response::{self, Body};
use crate::auth::authn::Mode;
use crate::listener::ConnInfo;

/// Where the page lives.
pub const PREFIX: &str = "/dashboard";

/// The page's Content-Security-Policy: only this origin's script, style and fetches; no inline
/// script or style, no framing, no plugins, no form posts, no `<base>`.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

const INDEX: &str = include_str!("index.html");
const APP: &str = include_str!("app.js");
const STYLE: &str = include_str!("style.css");

/// What a request under [`PREFIX`] gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// One of the static files: its content type and body.
    Asset(&'static str, &'static str),
    /// `/dashboard` without the slash: to `/dashboard/`, so relative asset paths resolve.
    Redirect,
    /// A method other than GET or HEAD.
    MethodNotAllowed,
    /// Under the prefix, but no such file.
    NotFound,
}

/// The route of a request, or None when the path is not the dashboard's (pure).
pub fn route(method: &Method, path: &str) -> Option<Route> {
    let rest = path.strip_prefix(PREFIX)?;
    if !(rest.is_empty() || rest.starts_with('/')) {
        return None; // `/dashboardx` is not ours
    }
    if method != Method::GET && method != Method::HEAD {
        return Some(Route::MethodNotAllowed);
    }
    Some(match rest {
        "" => Route::Redirect,
        "/" | "/index.html" => Route::Asset("text/html; charset=utf-8", INDEX),
        "/app.js" => Route::Asset("text/javascript; charset=utf-8", APP),
        "/style.css" => Route::Asset("text/css; charset=utf-8", STYLE),
        _ => Route::NotFound,
    })
}

/// Answers a dashboard request. When the control plane requires TLS the files are served
/// only over TLS: the script handles the token, so it must not be swappable on the way.
pub fn serve(mode: &Mode, parts: &http::request::Parts, route: Route) -> Response<Body> {
    let tls = parts.extensions.get::<ConnInfo>().is_some_and(|c| c.tls);
    if matches!(mode, Mode::Secure { .. }) && !tls {
        return respond(Route::NotFound);
    }
    respond(route)
}

/// The response for a route, with the security headers every dashboard answer carries.
pub fn respond(route: Route) -> Response<Body> {
    let mut r = match route {
        Route::Asset(ct, body) => {
            response::bytes(StatusCode::OK, ct, Bytes::from_static(body.as_bytes()))
        }
        Route::Redirect => {
            let mut r = response::bytes(StatusCode::MOVED_PERMANENTLY, "text/plain", Bytes::new());
            r.headers_mut()
                .insert(header::LOCATION, HeaderValue::from_static("/dashboard/"));
            r
        }
        Route::MethodNotAllowed => {
            response::bytes(StatusCode::METHOD_NOT_ALLOWED, "text/plain", Bytes::new())
        }
        Route::NotFound => response::bytes(StatusCode::NOT_FOUND, "text/plain", Bytes::new()),
    };
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // The token travels in the fragment, which is never sent; no Referer leaks the path either.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

#[cfg(test)]
mod tests;
