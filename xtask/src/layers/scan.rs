//! Parses a source tree's module files and the imports between them.
use std::{
    collections::{BTreeMap, HashMap},
    fs,
    path::{Component, Path, PathBuf},
};

use anyhow::{Context, bail};
use proc_macro2::{Spacing, TokenStream, TokenTree};
use syn::{
    Attribute, Item, Meta, Token, UseTree,
    punctuated::Punctuated,
    visit::{self, Visit},
};

/// The files of a tree and which files each imports from.
#[derive(Debug, Default)]
pub struct Graph {
    /// Relative to the tree's root.
    files: Vec<PathBuf>,
    /// (from, to) → the first path in `from` that named `to`, as written.
    edges: BTreeMap<(usize, usize), String>,
}

impl Graph {
    pub fn files(&self) -> usize {
        self.files.len()
    }

    pub fn file(&self, id: usize) -> &Path {
        &self.files[id]
    }

    pub fn edge_ids(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.edges.keys().copied()
    }

    /// Every import, in file order: (from, to, the path that made it).
    pub fn edges(&self) -> Vec<(&Path, &Path, &str)> {
        let mut out: Vec<_> =
            self.edges.iter().map(|(&(f, t), via)| (self.file(f), self.file(t), via.as_str())).collect();
        out.sort();
        out
    }

    /// The imports between the given files.
    pub fn edges_within(&self, files: &[usize]) -> Vec<(&Path, &Path, &str)> {
        let mut out: Vec<_> = self
            .edges
            .iter()
            .filter(|((f, t), _)| files.contains(f) && files.contains(t))
            .map(|(&(f, t), via)| (self.file(f), self.file(t), via.as_str()))
            .collect();
        out.sort();
        out
    }
}

/// A module: its file and the inline `mod` blocks (item indices) leading to it.
struct Module {
    file: usize,
    inline: Vec<usize>,
}

/// A crate's modules by path (`[]` = the crate root).
type Modules = BTreeMap<Vec<String>, Module>;

/// Scans every crate rooted in `root` (`lib.rs`, `main.rs`, `bin/*.rs`).
pub fn scan(root: &Path) -> anyhow::Result<Graph> {
    let mut crate_roots: Vec<PathBuf> =
        ["lib.rs", "main.rs"].iter().map(|f| root.join(f)).filter(|p| p.is_file()).collect();
    if let Ok(dir) = fs::read_dir(root.join("bin")) {
        let mut bins: Vec<PathBuf> =
            dir.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|e| e == "rs")).collect();
        bins.sort();
        crate_roots.extend(bins);
    }
    if crate_roots.is_empty() {
        bail!("{}: no lib.rs, main.rs or bin/*.rs", root.display());
    }
    let mut trees = Trees { root: normalize(root), ids: HashMap::new(), asts: Vec::new(), graph: Graph::default() };
    for crate_root in crate_roots {
        let mut modules = Modules::new();
        trees.load(&crate_root, true, Vec::new(), &mut modules)?;
        trees.link(&modules);
    }
    Ok(trees.graph)
}

struct Trees {
    root: PathBuf,
    ids: HashMap<PathBuf, usize>,
    asts: Vec<syn::File>,
    graph: Graph,
}

impl Trees {
    /// Parses a module file and, recursively, the modules it declares.
    fn load(&mut self, path: &Path, mod_rs: bool, module: Vec<String>, modules: &mut Modules) -> anyhow::Result<()> {
        let path = normalize(path);
        let file = match self.ids.get(&path) {
            Some(&id) => id,
            None => {
                let src = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
                let ast = syn::parse_file(&src).with_context(|| format!("parsing {}", path.display()))?;
                let id = self.asts.len();
                self.asts.push(ast);
                self.graph.files.push(path.strip_prefix(&self.root).unwrap_or(&path).to_path_buf());
                self.ids.insert(path.clone(), id);
                id
            }
        };
        // `a.rs` keeps its children in `a/`; `mod.rs`, crate roots and `#[path]` files beside them.
        let dir = if mod_rs { path.parent().unwrap_or(Path::new("")).to_path_buf() } else { path.with_extension("") };
        self.load_items(file, Vec::new(), module, &dir, modules)
    }

    fn load_items(
        &mut self,
        file: usize,
        inline: Vec<usize>,
        module: Vec<String>,
        dir: &Path,
        modules: &mut Modules,
    ) -> anyhow::Result<()> {
        let decls: Vec<(usize, String, bool, Option<String>)> = items(&self.asts[file], &inline)
            .iter()
            .enumerate()
            .filter_map(|(i, item)| match item {
                Item::Mod(m) if !test_only(&m.attrs) => {
                    Some((i, ident(&m.ident), m.content.is_some(), path_attr(&m.attrs)))
                }
                _ => None,
            })
            .collect();
        let at_file_level = inline.is_empty();
        modules.insert(module.clone(), Module { file, inline: inline.clone() });
        for (i, name, is_inline, path) in decls {
            let mut child = module.clone();
            child.push(name.clone());
            if is_inline {
                let mut chain = inline.clone();
                chain.push(i);
                self.load_items(file, chain, child, &dir.join(&name), modules)?;
                continue;
            }
            let (target, mod_rs) = match path {
                // Relative to the declaring file's directory, or the inline modules' one.
                Some(p) if at_file_level => {
                    let beside = self.root.join(&self.graph.files[file]);
                    (beside.parent().unwrap_or(Path::new("")).join(p), true)
                }
                Some(p) => (dir.join(p), true),
                None if dir.join(format!("{name}.rs")).is_file() => (dir.join(format!("{name}.rs")), false),
                None => (dir.join(&name).join("mod.rs"), true),
            };
            if !target.is_file() {
                eprintln!("warning: `mod {name}` in {}: no {}", self.graph.files[file].display(), target.display());
                continue;
            }
            self.load(&target, mod_rs, child, modules)?;
        }
        Ok(())
    }

    /// Adds the edges of every module of one crate.
    fn link(&mut self, modules: &Modules) {
        for (path, module) in modules {
            let items = items(&self.asts[module.file], &module.inline);
            let scope = scope(path, items);
            let mut refs = Refs::default();
            for item in items {
                refs.visit_item(item);
            }
            for segments in refs.paths {
                let Some(target) = resolve(path, &scope, &segments) else { continue };
                // The longest module prefix: a re-export counts as its module's.
                let Some((to_path, to)) = (0..=target.len()).rev().find_map(|n| modules.get_key_value(&target[..n]))
                else {
                    continue;
                };
                if to.file == module.file || path.starts_with(to_path) {
                    continue;
                }
                self.graph.edges.entry((module.file, to.file)).or_insert_with(|| segments.join("::"));
            }
        }
    }
}

/// The items of a file, or of the inline module `inline` leads to.
fn items<'a>(file: &'a syn::File, inline: &[usize]) -> &'a [Item] {
    let mut items = &file.items[..];
    for &i in inline {
        if let Item::Mod(syn::ItemMod { content: Some((_, inner)), .. }) = &items[i] {
            items = inner;
        }
    }
    items
}

/// Names a module binds to other modules' paths: its child modules and what
/// its `use` items import (a `use` may start from an earlier one's name).
fn scope(module: &[String], items: &[Item]) -> HashMap<String, Vec<String>> {
    let mut scope = HashMap::new();
    for item in items {
        if let Item::Mod(m) = item
            && !test_only(&m.attrs)
        {
            let mut path = module.to_vec();
            path.push(ident(&m.ident));
            scope.insert(ident(&m.ident), path);
        }
    }
    for _ in 0..2 {
        for item in items {
            let Item::Use(u) = item else { continue };
            if test_only(&u.attrs) || u.leading_colon.is_some() {
                continue;
            }
            let mut leaves = Vec::new();
            use_leaves(&u.tree, &mut Vec::new(), &mut leaves);
            for (segments, binding) in leaves {
                if let Some(name) = binding
                    && let Some(target) = resolve(module, &scope, &segments)
                {
                    scope.insert(name, target);
                }
            }
        }
    }
    scope
}

/// `a::{b, c::{self, d as e}, f::*}` → `a::b` (b), `a::c` (c), `a::c::d` (e), `a::f` (none).
fn use_leaves(tree: &UseTree, prefix: &mut Vec<String>, out: &mut Vec<(Vec<String>, Option<String>)>) {
    match tree {
        UseTree::Path(p) => {
            prefix.push(ident(&p.ident));
            use_leaves(&p.tree, prefix, out);
            prefix.pop();
        }
        UseTree::Name(n) => out.push(leaf(prefix, &ident(&n.ident), Some(ident(&n.ident)))),
        UseTree::Rename(r) => {
            let alias = ident(&r.rename);
            out.push(leaf(prefix, &ident(&r.ident), (alias != "_").then_some(alias)));
        }
        UseTree::Glob(_) => out.push((prefix.clone(), None)),
        UseTree::Group(g) => g.items.iter().for_each(|t| use_leaves(t, prefix, out)),
    }
}

fn leaf(prefix: &[String], name: &str, binding: Option<String>) -> (Vec<String>, Option<String>) {
    if name == "self" {
        let binding = binding.filter(|b| b != "self").or_else(|| prefix.last().cloned());
        return (prefix.to_vec(), binding);
    }
    let mut path = prefix.to_vec();
    path.push(name.to_owned());
    (path, binding)
}

/// A path written in `module` as an absolute module path of the crate, or
/// `None` for other crates, locals and the standard library.
fn resolve(module: &[String], scope: &HashMap<String, Vec<String>>, segments: &[String]) -> Option<Vec<String>> {
    let (first, rest) = segments.split_first()?;
    let mut base = match first.as_str() {
        "crate" | "$crate" => return Some(rest.to_vec()),
        "self" => module.to_vec(),
        "super" => module.get(..module.len().checked_sub(1)?)?.to_vec(),
        name => {
            let mut path = scope.get(name)?.clone();
            path.extend_from_slice(rest);
            return Some(path);
        }
    };
    let mut rest = rest;
    while let Some((s, tail)) = rest.split_first()
        && s == "super"
    {
        base.pop()?;
        rest = tail;
    }
    base.extend_from_slice(rest);
    Some(base)
}

/// Every path of two or more segments a module's items write (nested inline
/// modules and `#[cfg(test)]` items excluded), with macro tokens read as paths.
#[derive(Default)]
struct Refs {
    paths: Vec<Vec<String>>,
}

impl<'ast> Visit<'ast> for Refs {
    fn visit_item(&mut self, item: &'ast Item) {
        match item {
            // Scanned as its own module (or left out as a test module).
            Item::Mod(_) => {}
            Item::Use(u) => {
                if !test_only(&u.attrs) && u.leading_colon.is_none() {
                    let mut leaves = Vec::new();
                    use_leaves(&u.tree, &mut Vec::new(), &mut leaves);
                    self.paths.extend(leaves.into_iter().map(|(path, _)| path));
                }
            }
            _ if item_attrs(item).is_some_and(test_only) => {}
            _ => visit::visit_item(self, item),
        }
    }

    fn visit_impl_item(&mut self, item: &'ast syn::ImplItem) {
        let attrs = match item {
            syn::ImplItem::Const(i) => &i.attrs,
            syn::ImplItem::Fn(i) => &i.attrs,
            syn::ImplItem::Type(i) => &i.attrs,
            syn::ImplItem::Macro(i) => &i.attrs,
            _ => return visit::visit_impl_item(self, item),
        };
        if !test_only(attrs) {
            visit::visit_impl_item(self, item);
        }
    }

    // `pub(in crate::a)` names an ancestor: not an import.
    fn visit_visibility(&mut self, _: &'ast syn::Visibility) {}

    fn visit_path(&mut self, path: &'ast syn::Path) {
        if path.leading_colon.is_none() && path.segments.len() > 1 {
            self.paths.push(path.segments.iter().map(|s| ident(&s.ident)).collect());
        }
        visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        visit::visit_macro(self, mac);
        token_paths(mac.tokens.clone(), &mut self.paths);
    }
}

/// `a::b::c` (and `$crate::b`) sequences in macro tokens.
fn token_paths(tokens: TokenStream, out: &mut Vec<Vec<String>>) {
    let tokens: Vec<TokenTree> = tokens.into_iter().collect();
    let colons = |i: usize| {
        matches!((tokens.get(i), tokens.get(i + 1)),
            (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)))
                if a.as_char() == ':' && a.spacing() == Spacing::Joint && b.as_char() == ':')
    };
    let mut i = 0;
    while i < tokens.len() {
        let start = match &tokens[i] {
            TokenTree::Group(g) => {
                token_paths(g.stream(), out);
                None
            }
            TokenTree::Ident(id) if !(i >= 2 && colons(i - 2)) => Some(ident(id)),
            TokenTree::Punct(p) if p.as_char() == '$' => match tokens.get(i + 1) {
                Some(TokenTree::Ident(id)) if id == "crate" => {
                    i += 1;
                    Some("$crate".to_owned())
                }
                _ => None,
            },
            _ => None,
        };
        i += 1;
        let Some(first) = start else { continue };
        let mut path = vec![first];
        while colons(i)
            && let Some(TokenTree::Ident(id)) = tokens.get(i + 2)
        {
            path.push(ident(id));
            i += 3;
        }
        if path.len() > 1 {
            out.push(path);
        }
    }
}

fn ident(id: &proc_macro2::Ident) -> String {
    let s = id.to_string();
    s.strip_prefix("r#").map(str::to_owned).unwrap_or(s)
}

fn item_attrs(item: &Item) -> Option<&[Attribute]> {
    Some(match item {
        Item::Const(i) => &i.attrs,
        Item::Enum(i) => &i.attrs,
        Item::ExternCrate(i) => &i.attrs,
        Item::Fn(i) => &i.attrs,
        Item::ForeignMod(i) => &i.attrs,
        Item::Impl(i) => &i.attrs,
        Item::Macro(i) => &i.attrs,
        Item::Static(i) => &i.attrs,
        Item::Struct(i) => &i.attrs,
        Item::Trait(i) => &i.attrs,
        Item::TraitAlias(i) => &i.attrs,
        Item::Type(i) => &i.attrs,
        Item::Union(i) => &i.attrs,
        _ => return None,
    })
}

/// Whether `#[cfg(...)]` keeps the item out of every non-test build.
fn test_only(attrs: &[Attribute]) -> bool {
    attrs.iter().any(|a| a.path().is_ident("cfg") && a.parse_args::<Meta>().is_ok_and(|m| cfg_test_only(&m)))
}

fn cfg_test_only(meta: &Meta) -> bool {
    let nested = |l: &syn::MetaList| l.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated).ok();
    match meta {
        Meta::Path(p) => p.is_ident("test"),
        Meta::List(l) if l.path.is_ident("all") => nested(l).is_some_and(|n| n.iter().any(cfg_test_only)),
        Meta::List(l) if l.path.is_ident("any") => {
            nested(l).is_some_and(|n| !n.is_empty() && n.iter().all(cfg_test_only))
        }
        _ => false,
    }
}

/// `#[path = "x.rs"]` on a `mod` declaration.
fn path_attr(attrs: &[Attribute]) -> Option<String> {
    attrs.iter().find(|a| a.path().is_ident("path")).and_then(|a| match &a.meta {
        Meta::NameValue(nv) => match &nv.value {
            syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(s), .. }) => Some(s.value()),
            _ => None,
        },
        _ => None,
    })
}

/// `a/b/../c` → `a/c`, without touching the filesystem.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir if matches!(out.components().next_back(), Some(Component::Normal(_))) => {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}
