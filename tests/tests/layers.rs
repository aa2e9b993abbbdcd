//! The workspace's structure, checked: no module cycle in any crate, the gateway's
//! modules import only downward through the layers drawn in `gateway/src/lib.rs`, and
//! no source file is longer than [`MAX_LINES`].
//!
//! The module graph is read from the sources with a tokenizer (so comments and strings
//! never count): a node is a module's file, an edge is a path in that file that names an
//! item of another module (`crate::…`, `super::…`, `self::…`, or a child module's name),
//! followed through `pub use` re-exports to the module that defines the item. Declaring
//! a child (`mod x;`) is ownership, not an edge; `use super::*` in a test module is an
//! edge to the parent like any other use.

#![expect(
    clippy::expect_used,
    clippy::panic,
    reason = "a test: a failed expectation is the failure"
)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use proc_macro2::{Delimiter, Spacing, TokenStream, TokenTree};

/// Longest source file allowed (lines).
const MAX_LINES: usize = 800;

type ModPath = Vec<String>;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace")
        .to_path_buf()
}

/// The crates whose module graphs are checked, by their `src` directory.
const CRATES: [&str; 5] = [
    "gateway/src",
    "shared/src",
    "edge-agent/src",
    "installer/src",
    "tests/src",
];

/// One crate's modules: module path → the file that holds it.
struct Crate {
    files: BTreeMap<ModPath, PathBuf>,
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "target") {
                continue;
            }
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

impl Crate {
    /// The library's module tree (`lib.rs` and everything under it). Binaries
    /// (`main.rs`, `src/bin/`) are roots of their own and import the library like any
    /// other crate, so they are left out.
    fn load(src: &Path) -> Crate {
        let mut all = Vec::new();
        rust_files(src, &mut all);
        let mut files = BTreeMap::new();
        for file in all {
            let rel = file.strip_prefix(src).expect("under src");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if parts.first().is_some_and(|p| p == "bin") || parts == ["main.rs"] {
                continue;
            }
            let last = parts.pop().expect("a file name");
            let stem = last.trim_end_matches(".rs").to_owned();
            if stem != "mod" && !(parts.is_empty() && stem == "lib") {
                parts.push(stem);
            }
            files.insert(parts, file);
        }
        Crate { files }
    }

    fn is_module(&self, path: &[String]) -> bool {
        self.files.contains_key(path)
    }
}

fn is_path_sep(tokens: &[TokenTree], i: usize) -> bool {
    matches!(
        (tokens.get(i), tokens.get(i + 1)),
        (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)))
            if a.as_char() == ':' && a.spacing() == Spacing::Joint && b.as_char() == ':'
    )
}

/// The paths a token stream names, each as written (segments; `{a, b}` groups of a use
/// tree expanded; `*` kept as a segment), with the module they are written in.
fn collect_paths(stream: TokenStream, module: &ModPath, out: &mut Vec<(ModPath, Vec<String>)>) {
    let tokens: Vec<TokenTree> = stream.into_iter().collect();
    let mut i = 0;
    while i < tokens.len() {
        // `mod name { … }`: an inline module; paths inside are relative to it.
        if let (Some(TokenTree::Ident(m)), Some(TokenTree::Ident(name)), Some(TokenTree::Group(g))) =
            (tokens.get(i), tokens.get(i + 1), tokens.get(i + 2))
            && m == "mod"
            && g.delimiter() == Delimiter::Brace
        {
            let mut inner = module.clone();
            inner.push(name.to_string());
            collect_paths(g.stream(), &inner, out);
            i += 3;
            continue;
        }
        match &tokens[i] {
            TokenTree::Group(g) => {
                collect_paths(g.stream(), module, out);
                i += 1;
            }
            TokenTree::Ident(first) => {
                let preceded_by_sep = i >= 2 && is_path_sep(&tokens, i - 2);
                if preceded_by_sep || !is_path_sep(&tokens, i + 1) {
                    i += 1;
                    continue;
                }
                let mut prefix = vec![first.to_string()];
                let mut j = i + 1;
                loop {
                    if !is_path_sep(&tokens, j) {
                        out.push((module.clone(), prefix));
                        break;
                    }
                    match tokens.get(j + 2) {
                        Some(TokenTree::Ident(seg)) => {
                            prefix.push(seg.to_string());
                            j += 3;
                        }
                        Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Brace => {
                            for tree in use_group(g.stream()) {
                                let mut full = prefix.clone();
                                full.extend(tree);
                                out.push((module.clone(), full));
                            }
                            j += 3;
                            break;
                        }
                        Some(TokenTree::Punct(p)) if p.as_char() == '*' => {
                            prefix.push("*".into());
                            out.push((module.clone(), prefix));
                            j += 3;
                            break;
                        }
                        _ => {
                            out.push((module.clone(), prefix));
                            break;
                        }
                    }
                }
                i = j;
            }
            TokenTree::Punct(_) | TokenTree::Literal(_) => i += 1,
        }
    }
}

/// The leaves of a use-tree group: `{a::b, c as d, e::{f, g}, self}`.
fn use_group(stream: TokenStream) -> Vec<Vec<String>> {
    let tokens: Vec<TokenTree> = stream.into_iter().collect();
    let mut out = Vec::new();
    for part in tokens.split(|t| matches!(t, TokenTree::Punct(p) if p.as_char() == ',')) {
        let mut segs = Vec::new();
        let mut k = 0;
        while k < part.len() {
            match &part[k] {
                TokenTree::Ident(id) if id == "as" => break,
                TokenTree::Ident(id) => segs.push(id.to_string()),
                TokenTree::Punct(p) if p.as_char() == '*' => segs.push("*".into()),
                TokenTree::Group(g) if g.delimiter() == Delimiter::Brace => {
                    for tree in use_group(g.stream()) {
                        let mut full = segs.clone();
                        full.extend(tree);
                        out.push(full);
                    }
                    segs.clear();
                    break;
                }
                _ => {}
            }
            k += 1;
        }
        if !segs.is_empty() {
            out.push(segs);
        }
    }
    out
}

/// Where `pub use` re-exports point: (module, exported name) → the path it names.
fn reexports(krate: &Crate) -> HashMap<(ModPath, String), Vec<String>> {
    let mut map = HashMap::new();
    for (module, file) in &krate.files {
        let text = std::fs::read_to_string(file).expect("readable source");
        let Ok(stream) = TokenStream::from_str(&text) else {
            continue;
        };
        let tokens: Vec<TokenTree> = stream.into_iter().collect();
        for (i, t) in tokens.iter().enumerate() {
            let TokenTree::Ident(id) = t else { continue };
            if id != "use" {
                continue;
            }
            let public = match i.checked_sub(1).and_then(|p| tokens.get(p)) {
                Some(TokenTree::Ident(p)) => p == "pub",
                Some(TokenTree::Group(g)) => {
                    g.delimiter() == Delimiter::Parenthesis
                        && i >= 2
                        && matches!(&tokens[i - 2], TokenTree::Ident(p) if p == "pub")
                }
                _ => false,
            };
            if !public {
                continue;
            }
            let end = tokens[i..]
                .iter()
                .position(|t| matches!(t, TokenTree::Punct(p) if p.as_char() == ';'))
                .map_or(tokens.len(), |e| i + e);
            let stmt: TokenStream = tokens[i + 1..end].iter().cloned().collect();
            let mut paths = Vec::new();
            collect_paths(stmt, module, &mut paths);
            for (_, path) in paths {
                if let Some(name) = path.last()
                    && name != "*"
                    && name != "self"
                {
                    map.insert((module.clone(), name.clone()), path);
                }
            }
        }
    }
    map
}

/// The module file a path written in `module` lands in, or `None` for another crate.
fn resolve(
    krate: &Crate,
    exports: &HashMap<(ModPath, String), Vec<String>>,
    module: &ModPath,
    path: &[String],
    depth: usize,
) -> Option<ModPath> {
    let first = path.first()?;
    let mut base: ModPath = match first.as_str() {
        "crate" => Vec::new(),
        "self" => module.clone(),
        "super" => {
            let mut m = module.clone();
            m.pop();
            m
        }
        name => {
            let mut child = module.clone();
            child.push(name.to_owned());
            if !krate.is_module(&child) {
                return None;
            }
            child
        }
    };
    for seg in &path[1..] {
        match seg.as_str() {
            "super" => {
                base.pop();
            }
            "self" | "*" => {}
            name => {
                let mut next = base.clone();
                next.push(name.to_owned());
                if krate.is_module(&next) {
                    base = next;
                } else if let Some(target) = exports.get(&(base.clone(), name.to_owned()))
                    && depth < 8
                {
                    return resolve(krate, exports, &base, target, depth + 1).or(Some(base));
                } else {
                    break;
                }
            }
        }
    }
    // An inline module (`mod tests { … }`) belongs to its file's node.
    while !krate.is_module(&base) && !base.is_empty() {
        base.pop();
    }
    Some(base)
}

/// The file a module path (possibly inside an inline module) is written in.
fn file_node(krate: &Crate, module: &ModPath) -> ModPath {
    let mut m = module.clone();
    while !krate.is_module(&m) && !m.is_empty() {
        m.pop();
    }
    m
}

fn graph(krate: &Crate) -> BTreeMap<ModPath, BTreeSet<ModPath>> {
    let exports = reexports(krate);
    let mut edges: BTreeMap<ModPath, BTreeSet<ModPath>> = BTreeMap::new();
    for (module, file) in &krate.files {
        edges.entry(module.clone()).or_default();
        let text = std::fs::read_to_string(file).expect("readable source");
        let stream = TokenStream::from_str(&text)
            .unwrap_or_else(|e| panic!("{} does not tokenize: {e:?}", file.display()));
        let mut paths = Vec::new();
        collect_paths(stream, module, &mut paths);
        for (written_in, path) in paths {
            let from = file_node(krate, &written_in);
            if let Some(to) = resolve(krate, &exports, &written_in, &path, 0)
                && to != from
            {
                edges.entry(from).or_default().insert(to);
            }
        }
    }
    edges
}

/// Strongly connected components with more than one node (Tarjan).
fn cycles(edges: &BTreeMap<ModPath, BTreeSet<ModPath>>) -> Vec<Vec<ModPath>> {
    struct State<'a> {
        edges: &'a BTreeMap<ModPath, BTreeSet<ModPath>>,
        index: HashMap<&'a ModPath, usize>,
        low: HashMap<&'a ModPath, usize>,
        stack: Vec<&'a ModPath>,
        on_stack: BTreeSet<&'a ModPath>,
        next: usize,
        found: Vec<Vec<ModPath>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a ModPath) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        if let Some(targets) = s.edges.get(v) {
            for w in targets {
                if !s.index.contains_key(w) {
                    visit(s, w);
                    let lw = s.low[w];
                    let lv = s.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(lw);
                } else if s.on_stack.contains(w) {
                    let iw = s.index[w];
                    let lv = s.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(iw);
                }
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.clone());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                s.found.push(component);
            }
        }
    }
    let mut s = State {
        edges,
        index: HashMap::new(),
        low: HashMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        found: Vec::new(),
    };
    for v in edges.keys() {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    s.found
}

fn show(m: &ModPath) -> String {
    if m.is_empty() {
        "crate".into()
    } else {
        m.join("::")
    }
}

#[test]
fn no_crate_has_a_module_cycle() {
    let root = workspace();
    let mut problems = Vec::new();
    for src in CRATES {
        let krate = Crate::load(&root.join(src));
        let edges = graph(&krate);
        for component in cycles(&edges) {
            let members: BTreeSet<&ModPath> = component.iter().collect();
            let detail: Vec<String> = component
                .iter()
                .map(|m| {
                    let to: Vec<String> = edges[m]
                        .iter()
                        .filter(|t| members.contains(t))
                        .map(show)
                        .collect();
                    format!("    {} -> {}", show(m), to.join(", "))
                })
                .collect();
            problems.push(format!("{src}: a cycle\n{}", detail.join("\n")));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The layer table in `gateway/src/lib.rs`: the fenced block after the line that starts
/// with `Layers`, one layer per line from the top, `name name | what they own`.
fn gateway_layers(lib: &str) -> Vec<Vec<String>> {
    let doc: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("//!"))
        .map(|l| l.strip_prefix(' ').unwrap_or(l))
        .collect();
    let start = doc
        .iter()
        .position(|l| l.starts_with("Layers"))
        .expect("gateway/src/lib.rs documents its layers in a paragraph starting `Layers`");
    let open = doc[start..]
        .iter()
        .position(|l| l.starts_with("```"))
        .map(|p| start + p + 1)
        .expect("the layer table is a fenced block");
    doc[open..]
        .iter()
        .take_while(|l| !l.starts_with("```"))
        .map(|l| {
            l.split('|')
                .next()
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_owned)
                .collect()
        })
        .filter(|names: &Vec<String>| !names.is_empty())
        .collect()
}

#[test]
fn gateway_modules_import_only_from_lower_layers() {
    let root = workspace();
    let lib = std::fs::read_to_string(root.join("gateway/src/lib.rs")).expect("lib.rs");
    let layers = gateway_layers(&lib);
    let mut level: HashMap<String, usize> = HashMap::new();
    for (i, names) in layers.iter().enumerate() {
        for n in names {
            assert!(
                level.insert(n.clone(), layers.len() - i).is_none(),
                "`{n}` is in two layers"
            );
        }
    }
    let krate = Crate::load(&root.join("gateway/src"));
    let top: BTreeSet<String> = krate
        .files
        .keys()
        .filter_map(|m| m.first().cloned())
        .collect();
    let missing: Vec<&String> = top.iter().filter(|m| !level.contains_key(*m)).collect();
    assert!(
        missing.is_empty(),
        "modules missing from the layer table in gateway/src/lib.rs: {missing:?}"
    );
    let mut wrong = Vec::new();
    for (from, targets) in graph(&krate) {
        let (Some(a), false) = (from.first(), from.is_empty()) else {
            continue;
        };
        for to in targets {
            let Some(b) = to.first() else { continue };
            if a != b && level[a] <= level[b] {
                wrong.push(format!(
                    "{} (layer {}) imports {} (layer {})",
                    show(&from),
                    level[a],
                    show(&to),
                    level[b]
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports that do not go down the layers of gateway/src/lib.rs:\n  {}",
        wrong.join("\n  ")
    );
}

#[test]
fn no_source_file_is_longer_than_the_limit() {
    let root = workspace();
    let mut files = Vec::new();
    for dir in [
        "gateway",
        "shared",
        "edge-agent",
        "installer",
        "tests",
        "fuzz",
    ] {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(files.len() > 50, "found only {} source files", files.len());
    let mut long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let lines = std::fs::read_to_string(f).ok()?.lines().count();
            (lines > MAX_LINES).then(|| format!("{} ({lines} lines)", f.display()))
        })
        .collect();
    long.sort();
    assert!(
        long.is_empty(),
        "files over {MAX_LINES} lines (split them by what they own):\n  {}",
        long.join("\n  ")
    );
}

/// The checker itself: a two-module cycle written in source is found, and one written
/// only in a comment or a string is not.
#[test]
fn the_checker_sees_a_cycle_and_ignores_comments() {
    let dir = tempfile::tempdir().expect("temp dir");
    let src = dir.path();
    std::fs::write(src.join("lib.rs"), "mod a;\nmod b;\nmod c;\n").expect("write");
    std::fs::write(
        src.join("a.rs"),
        "use crate::b::B;\npub struct A;\n// crate::c::C\n",
    )
    .expect("write");
    std::fs::write(src.join("b.rs"), "pub struct B(super::a::A);\n").expect("write");
    std::fs::write(
        src.join("c.rs"),
        "pub struct C;\nconst S: &str = \"crate::a::A\";\n",
    )
    .expect("write");
    let krate = Crate::load(src);
    let edges = graph(&krate);
    let found = cycles(&edges);
    assert_eq!(found.len(), 1, "{found:?}");
    let mut members: Vec<String> = found[0].iter().map(show).collect();
    members.sort();
    assert_eq!(members, ["a", "b"]);
    assert!(edges[&vec!["c".to_owned()]].is_empty());
    // A re-export is followed to the module that defines the item.
    std::fs::write(
        src.join("lib.rs"),
        "mod a;\nmod b;\nmod c;\npub use c::C;\n",
    )
    .expect("write");
    std::fs::write(src.join("b.rs"), "pub struct B(crate::C);\n").expect("write");
    let edges = graph(&Crate::load(src));
    assert!(edges[&vec!["b".to_owned()]].contains(&vec!["c".to_owned()]));
    assert!(cycles(&edges).is_empty());
}
