//! Workload selectors: cgroup path globs relative to `agent.cgroupRoot`.
//!
//! `*` stays within one path component, `**` crosses `/`. A cgroup is
//! identified by walking from its own path up through its ancestors (deepest
//! first, the root `""` last); at the first level any glob matches, the first
//! workload in file order wins. So processes in `training/job-1/ctr` inherit
//! the identity of a selector that matched `training/job-1`.
use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

/// Compiles one selector glob with the separator-aware semantics above.
pub fn glob(pattern: &str) -> Result<Glob, globset::Error> {
    GlobBuilder::new(pattern).literal_separator(true).build()
}

/// Strips the leading/trailing `/` that users write out of habit.
pub fn normalise(pattern: &str) -> &str {
    pattern.trim_matches('/')
}

/// All workloads' globs in one set; `owner[i]` is the workload id of glob `i`.
#[derive(Clone, Debug)]
pub struct Selector {
    set: GlobSet,
    owner: Vec<u32>,
}

impl Default for Selector {
    fn default() -> Self {
        Self { set: GlobSet::empty(), owner: Vec::new() }
    }
}

impl Selector {
    /// `workloads`: (id, globs) in file order.
    pub fn build<'a>(workloads: impl IntoIterator<Item = (u32, &'a [String])>) -> Result<Self, globset::Error> {
        let mut builder = GlobSetBuilder::new();
        let mut owner = Vec::new();
        for (id, globs) in workloads {
            for g in globs {
                builder.add(glob(normalise(g))?);
                owner.push(id);
            }
        }
        Ok(Self { set: builder.build()?, owner })
    }

    /// Workload id for a cgroup path relative to the cgroup root (`""` = the root).
    pub fn workload_for(&self, rel_path: &str) -> Option<u32> {
        let mut path = rel_path.trim_matches('/');
        let mut hits = Vec::new();
        loop {
            self.set.matches_into(path, &mut hits);
            // Glob indices follow file order, so the smallest owner id wins.
            if let Some(id) = hits.iter().filter_map(|&i| self.owner.get(i)).min() {
                return Some(*id);
            }
            if path.is_empty() {
                return None;
            }
            path = path.rfind('/').map_or("", |i| &path[..i]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(workloads: &[(u32, &[&str])]) -> Selector {
        let owned: Vec<(u32, Vec<String>)> =
            workloads.iter().map(|(id, g)| (*id, g.iter().map(|s| s.to_string()).collect())).collect();
        Selector::build(owned.iter().map(|(id, g)| (*id, g.as_slice()))).unwrap()
    }

    #[test]
    fn star_stays_in_one_component_but_ancestors_are_inherited() {
        let s = sel(&[(1, &["training/*"])]);
        assert_eq!(s.workload_for("training/job-1"), Some(1));
        // Not matched directly, but its ancestor training/job-1 is.
        assert_eq!(s.workload_for("training/job-1/ctr/sub"), Some(1));
        assert_eq!(s.workload_for("training"), None);
        assert_eq!(s.workload_for("other/job-1"), None);
        assert_eq!(s.workload_for(""), None);
    }

    #[test]
    fn double_star_crosses_slashes() {
        let s = sel(&[(1, &["jobs/**/gpu"]), (2, &["*"])]);
        assert_eq!(s.workload_for("jobs/a/b/gpu"), Some(1));
        assert_eq!(s.workload_for("jobs/a/gpu"), Some(1));
        // `*` only matches the first level; deeper paths inherit from it.
        assert_eq!(s.workload_for("jobs/a/b/cpu"), Some(2));
        assert_eq!(s.workload_for("jobs"), Some(2));
    }

    #[test]
    fn deepest_level_wins_then_file_order() {
        let s = sel(&[(1, &["a"]), (2, &["a/b", "x"]), (3, &["a/b"])]);
        assert_eq!(s.workload_for("a/b/c"), Some(2));
        assert_eq!(s.workload_for("a/c"), Some(1));
        assert_eq!(s.workload_for("/a/b/"), Some(2));
    }

    #[test]
    fn root_path_and_match_all() {
        let s = sel(&[(1, &["training/*"]), (7, &["**"])]);
        assert_eq!(s.workload_for(""), Some(7));
        assert_eq!(s.workload_for("misc/x"), Some(7));
        assert_eq!(s.workload_for("training/j"), Some(1));
        assert_eq!(Selector::default().workload_for("a"), None);
    }

    #[test]
    fn leading_slash_is_stripped() {
        let s = sel(&[(3, &["/inference/*"])]);
        assert_eq!(s.workload_for("inference/llm"), Some(3));
        assert!(glob("a/[").is_err());
    }
}
