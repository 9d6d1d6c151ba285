//! `cargo xtask layers`: file-level import circles in a crate's source tree.
//!
//! Every module reachable from a crate root (`lib.rs`, `main.rs`, `bin/*.rs`)
//! is parsed; every `use` tree and every other path that names a module of the
//! crate (`crate::`, `super::`, `self::`, a child module or a name a `use`
//! bound, also inside macro tokens) becomes an edge to the file defining the
//! longest matching module, so a re-export through a `mod.rs` counts as an
//! import of that `mod.rs`. A child naming an ancestor is not an edge (every
//! child sits inside its parent); `#[cfg(test)]` modules and items are
//! skipped. A circle is a strongly connected component of more than one file.
mod scan;

use std::path::{Path, PathBuf};

use anyhow::bail;
use petgraph::{algo::tarjan_scc, graph::DiGraph};

pub use scan::{Graph, scan};

/// The trees `cargo xtask layers` checks by default.
pub const TREES: [&str; 3] = ["agent/src", "common/src", "ebpf/src"];

#[derive(clap::Args)]
pub struct Args {
    /// Also print every file's imports (the edges the check follows).
    #[arg(long)]
    pub edges: bool,
    /// Source trees, relative to the workspace (default: agent/src common/src ebpf/src).
    pub trees: Vec<PathBuf>,
}

/// Prints each tree's circles (and with `edges`, its import graph); fails
/// naming the files when any tree has a circle.
pub fn run(args: Args) -> anyhow::Result<()> {
    let trees = if args.trees.is_empty() { TREES.iter().map(PathBuf::from).collect() } else { args.trees };
    let mut failed = Vec::new();
    for tree in &trees {
        let graph = scan(&crate::util::workspace().join(tree))?;
        let shown = |file: &Path| tree.join(file).display().to_string();
        if args.edges {
            for (from, to, via) in graph.edges() {
                println!("{} -> {} ({via})", shown(from), shown(to));
            }
        }
        let found = circles(&graph);
        if found.is_empty() {
            println!("{}: no import circles", tree.display());
            continue;
        }
        println!("{}: {} import circle(s)", tree.display(), found.len());
        for circle in &found {
            println!("  {}", circle.iter().map(|&f| shown(graph.file(f))).collect::<Vec<_>>().join(" <-> "));
            for (from, to, via) in graph.edges_within(circle) {
                println!("    {} -> {} ({via})", shown(from), shown(to));
            }
            failed.extend(circle.iter().map(|&f| shown(graph.file(f))));
        }
    }
    if !failed.is_empty() {
        bail!("import circles between: {}", failed.join(", "));
    }
    Ok(())
}

/// Strongly connected components of more than one file, each sorted by file
/// path, in path order.
pub fn circles(graph: &Graph) -> Vec<Vec<usize>> {
    let mut g = DiGraph::<usize, ()>::new();
    let nodes: Vec<_> = (0..graph.files()).map(|f| g.add_node(f)).collect();
    for (from, to) in graph.edge_ids() {
        g.add_edge(nodes[from], nodes[to], ());
    }
    let mut out: Vec<Vec<usize>> = tarjan_scc(&g)
        .into_iter()
        .filter(|c| c.len() > 1)
        .map(|c| {
            let mut files: Vec<usize> = c.into_iter().map(|n| g[n]).collect();
            files.sort_by_key(|&f| graph.file(f));
            files
        })
        .collect();
    out.sort_by_key(|c| graph.file(c[0]).to_path_buf());
    out
}

#[cfg(test)]
mod tests;
