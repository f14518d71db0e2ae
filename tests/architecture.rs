//! The layering the brief asks for, checked on every `cargo test`: the domain layers
//! (`collab`, `store`, `presence`, `notifications`, `history`) know nothing of the network side.
//! They may not name `crate::realtime`, `crate::http`, `crate::state` / `AppState`,
//! socketioxide (any of its crates) or the socket types `crate::cluster` re-exports.
//!
//! Every path a file names counts: `use` trees (grouped and nested, `self`/`super`
//! resolved against the file's module), fully qualified paths in code, and paths
//! inside macro invocations (`tracing::info!`, `tokio::select!`, ...). Comments and
//! strings do not.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use proc_macro2::{TokenStream, TokenTree};
use syn::visit::Visit;

/// Layers that must keep to the rule.
const CHECKED: &[&str] = &[
    "src/collab",
    "src/store",
    "src/presence",
    "src/notifications",
    "src/history",
];

/// Layers known not to keep to it yet. The test fails once one of them complies, so
/// that it moves to [`CHECKED`] and stays compliant.
const PENDING: &[&str] = &[];

#[test]
fn domain_layers_import_no_network_layer() {
    let mut report = String::new();
    for layer in CHECKED {
        for (file, path) in violations(layer) {
            let _ = writeln!(report, "{file}: {path}");
        }
    }
    assert!(
        report.is_empty(),
        "these files reach the network side (see tests/architecture.rs):\n{report}"
    );
}

#[test]
fn pending_layers_are_checked_once_they_comply() {
    for layer in PENDING {
        assert!(
            !violations(layer).is_empty(),
            "{layer} no longer imports the network side: move it from PENDING to CHECKED \
             in tests/architecture.rs"
        );
    }
}

#[test]
fn the_check_sees_every_form_of_path() {
    let source = r#"
        use crate::{ids::UserId, realtime::{fanout::SocketIoFanout, MAIN_NAMESPACES}};
        use super::super::http;
        use socketioxide::extract::SocketRef;
        use crate::cluster::{NodeLink, SocketRef as Sock};
        fn f() {
            let _ = crate::state::AppState::new;
            tracing::info!(x = ?socketioxide_core::Value::Bytes(Default::default()));
            // crate::realtime in a comment is fine
            let _ = "crate::http in a string is fine";
        }
        mod inner {
            use super::super::super::realtime::connect;
        }
    "#;
    let found = forbidden_paths(source, &["crate", "presence", "worker"]);
    assert_eq!(
        found,
        [
            "crate::realtime::fanout::SocketIoFanout",
            "crate::realtime::MAIN_NAMESPACES",
            "crate::http",
            "socketioxide::extract::SocketRef",
            "crate::cluster::SocketRef",
            "crate::state::AppState::new",
            "socketioxide_core::Value::Bytes",
            "crate::realtime::connect",
        ]
    );
    // The clean imports of a domain layer pass.
    let clean = "use crate::{cluster::NodeLink, fanout::Fanout, store::Store};\n\
                 use super::status::PresenceStatus;";
    assert!(forbidden_paths(clean, &["crate", "presence", "worker"]).is_empty());
}

/// `(file, path)` for every forbidden path named under `layer`.
fn violations(layer: &str) -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    collect_rust_files(&root.join(layer), &mut files);
    assert!(!files.is_empty(), "no Rust files under {layer}");
    let mut found = Vec::new();
    for file in files {
        let source = std::fs::read_to_string(&file).expect("readable source file");
        let relative = file.strip_prefix(root).unwrap_or(&file);
        let module = module_path(relative);
        let module: Vec<&str> = module.iter().map(String::as_str).collect();
        for path in forbidden_paths(&source, &module) {
            found.push((relative.display().to_string(), path));
        }
    }
    found
}

fn collect_rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect_rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// `src/presence/worker/friendships.rs` -> `crate::presence::worker::friendships`;
/// `mod.rs` names its directory.
fn module_path(relative: &Path) -> Vec<String> {
    let mut module = vec!["crate".to_string()];
    let parts: Vec<String> = relative
        .with_extension("")
        .components()
        .skip(1) // src
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        if !(last && part == "mod") {
            module.push(part.clone());
        }
    }
    module
}

/// Every forbidden path `source` names, resolved to start at `crate` or an external
/// crate, in order of appearance. `module` is the file's module path.
fn forbidden_paths(source: &str, module: &[&str]) -> Vec<String> {
    let file = syn::parse_file(source).expect("the file parses");
    let mut paths = PathCollector {
        module: module.iter().map(|s| s.to_string()).collect(),
        found: Vec::new(),
    };
    paths.visit_file(&file);
    paths
        .found
        .into_iter()
        .filter(|path| is_forbidden(path))
        .map(|path| path.join("::"))
        .collect()
}

fn is_forbidden(path: &[String]) -> bool {
    let segment = |i: usize| path.get(i).map(String::as_str);
    let network_module =
        segment(0) == Some("crate") && matches!(segment(1), Some("realtime" | "http" | "state"));
    let socket_type = segment(0) == Some("crate")
        && segment(1) == Some("cluster")
        && matches!(segment(2), Some("SocketRef" | "SocketIo" | "Adapter"));
    let socketioxide = segment(0).is_some_and(|krate| krate.starts_with("socketioxide"));
    let app_state = path.iter().any(|s| s == "AppState");
    network_module || socket_type || socketioxide || app_state
}

struct PathCollector {
    /// The module being visited (inline `mod` blocks included).
    module: Vec<String>,
    found: Vec<Vec<String>>,
}

impl PathCollector {
    /// Makes `segments` absolute: `self::`/`super::` against the current module,
    /// anything else is already `crate::...` or an external crate.
    fn record(&mut self, segments: Vec<String>) {
        let mut absolute = self.module.clone();
        let mut rest = segments.as_slice();
        match rest.first().map(String::as_str) {
            Some("self") => rest = &rest[1..],
            Some("super") => {
                while rest.first().map(String::as_str) == Some("super") {
                    absolute.pop();
                    rest = &rest[1..];
                }
            }
            _ => absolute.clear(),
        }
        absolute.extend(rest.iter().cloned());
        if absolute.len() > 1 {
            self.found.push(absolute);
        }
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree);
                prefix.pop();
            }
            syn::UseTree::Name(n) => self.leaf(prefix, n.ident.to_string()),
            syn::UseTree::Rename(r) => self.leaf(prefix, r.ident.to_string()),
            syn::UseTree::Glob(_) => self.record(prefix.clone()),
            syn::UseTree::Group(g) => {
                for item in &g.items {
                    self.use_tree(prefix, item);
                }
            }
        }
    }

    /// `use a::b::{self}` names `a::b`; `use a::b::c` names `a::b::c`.
    fn leaf(&mut self, prefix: &[String], name: String) {
        let mut path = prefix.to_vec();
        if name != "self" {
            path.push(name);
        }
        self.record(path);
    }

    /// Paths inside a macro's tokens: runs of `ident ::` pairs.
    fn tokens(&mut self, tokens: TokenStream) {
        let mut run: Vec<String> = Vec::new();
        let mut after_colons = false;
        let mut pending_colon = false;
        for tree in tokens {
            match tree {
                TokenTree::Ident(ident) if run.is_empty() || after_colons => {
                    run.push(ident.to_string());
                    after_colons = false;
                    pending_colon = false;
                }
                TokenTree::Punct(p) if p.as_char() == ':' && !run.is_empty() => {
                    if pending_colon {
                        after_colons = true;
                        pending_colon = false;
                    } else {
                        pending_colon = true;
                    }
                }
                other => {
                    self.flush(&mut run);
                    after_colons = false;
                    pending_colon = false;
                    if let TokenTree::Ident(ident) = &other {
                        run.push(ident.to_string());
                    }
                    if let TokenTree::Group(group) = other {
                        self.tokens(group.stream());
                    }
                }
            }
        }
        self.flush(&mut run);
    }

    fn flush(&mut self, run: &mut Vec<String>) {
        if run.len() > 1 {
            self.record(std::mem::take(run));
        }
        run.clear();
    }
}

impl<'ast> Visit<'ast> for PathCollector {
    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        self.use_tree(&mut Vec::new(), &item.tree);
    }

    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        self.module.push(item.ident.to_string());
        syn::visit::visit_item_mod(self, item);
        self.module.pop();
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        if path.segments.len() > 1 || path.leading_colon.is_some() {
            let segments = path.segments.iter().map(|s| s.ident.to_string()).collect();
            self.record(segments);
        } else if path.segments.first().is_some_and(|s| s.ident == "AppState") {
            self.found.push(vec!["AppState".into()]);
        }
        syn::visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.tokens(mac.tokens.clone());
        syn::visit::visit_macro(self, mac);
    }
}
