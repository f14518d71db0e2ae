//! The demo editor page (`client-examples/web`), served at `/` and `/demo` so that
//! `cargo run` plus `seed-demo` gives a working collaborative editor in a browser.
//!
//! The built bundle is committed and embedded at compile time: the binary serves it
//! wherever it runs, with no path to configure and no Node needed to build the server.
//! The page takes its token and entry from the query string (`?token=...&entry=...`),
//! which the handlers never read: they only hand out static files.

use axum::http::header;
use axum::response::IntoResponse;

const INDEX_HTML: &str = include_str!("../../client-examples/web/dist/index.html");
const APP_JS: &str = include_str!("../../client-examples/web/dist/app.js");
const APP_CSS: &str = include_str!("../../client-examples/web/dist/app.css");

/// Revalidate each time: the bundle changes with the binary, and it is small.
const NO_CACHE: (header::HeaderName, &str) = (header::CACHE_CONTROL, "no-cache");

/// `GET /` and `GET /demo`: the editor page.
pub async fn page() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8"), NO_CACHE],
        INDEX_HTML,
    )
}

/// `GET /demo/app.js`: the bundled editor (Quill, Yjs, socket.io-client).
pub async fn script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            NO_CACHE,
        ],
        APP_JS,
    )
}

/// `GET /demo/app.css`.
pub async fn stylesheet() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8"), NO_CACHE],
        APP_CSS,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_the_embedded_assets() {
        assert!(INDEX_HTML.contains(r#"src="/demo/app.js""#));
        assert!(INDEX_HTML.contains(r#"href="/demo/app.css""#));
        assert!(APP_JS.len() > 1000 && APP_CSS.len() > 100);
    }
}
