//! Workload selectors: cgroup path globs relative to `agent.cgroupRoot`,
//! plus identity criteria (namespace, labels, Slurm job, unit, ...).
//!
//! `*` stays within one path component, `**` crosses `/`. A cgroup is
//! identified by walking from its own path up through its ancestors (deepest
//! first, the root `""` last); at the first level where some workload's
//! selector fully matches, the first such workload in file order wins. So
//! processes in `training/job-1/ctr` inherit the identity of a selector that
//! matched `training/job-1`. A workload without `cgroup` globs competes at the
//! cgroup's own level, judged on the cgroup's identity facts (which already
//! include what its ancestors' paths say).
use std::collections::BTreeMap;

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

use super::error::quoted;
use super::labels::LabelSelector;
use super::model::MetaSelector;

/// Compiles one selector glob with the separator-aware semantics above.
pub fn glob(pattern: &str) -> Result<Glob, globset::Error> {
    GlobBuilder::new(pattern).literal_separator(true).build()
}

/// A glob over a name (namespace, image, unit...): `*` matches anything.
pub fn name_glob(pattern: &str) -> Result<Glob, globset::Error> {
    GlobBuilder::new(pattern).literal_separator(false).build()
}

/// Strips the leading/trailing `/` that users write out of habit.
pub fn normalise(pattern: &str) -> &str {
    pattern.trim_matches('/')
}

/// Why a cgroup glob must be refused, if it must. Globs match paths below
/// the cgroup root, and a leading `/` is dropped, so only a `..` component
/// can point outside the root; an empty glob names the root itself, and
/// with it, by inheritance, every cgroup. A `.` or empty component matches
/// no path at all: refused too rather than left silently inert.
pub fn glob_error(pattern: &str) -> Option<String> {
    let rel = normalise(pattern);
    if rel.is_empty() {
        let what = if pattern.is_empty() { "empty glob: it".to_string() } else { quoted(pattern) };
        return Some(format!(
            "{what} would select agent.cgroupRoot itself, and so every cgroup below it (write `**` if that is meant)"
        ));
    }
    let parts: Vec<&str> = rel.split('/').collect();
    if parts.iter().any(|c| means(c, "..")) {
        return Some(format!(
            "{} has a `..` component, which would reach outside agent.cgroupRoot; globs select cgroups below it",
            quoted(pattern)
        ));
    }
    let fixed: Vec<&str> = parts.iter().copied().filter(|c| !c.is_empty() && !means(c, ".")).collect();
    if fixed.len() == parts.len() {
        return None;
    }
    let hint = if fixed.is_empty() { String::new() } else { format!("; write {}", quoted(&fixed.join("/"))) };
    Some(format!("{} has an empty or `.` component, which no cgroup path has{hint}", quoted(pattern)))
}

/// Whether glob component `c` matches the special name `dots`: written
/// plainly, escaped or in classes (`\.\.`, `.[.]`), or as one of `{a,..}`.
fn means(c: &str, dots: &str) -> bool {
    let bare: String = c.chars().filter(|ch| !matches!(ch, '\\' | '[' | ']')).collect();
    match bare.strip_prefix('{').and_then(|b| b.strip_suffix('}')) {
        Some(alternatives) => alternatives.split(',').any(|a| a == dots),
        None => bare == dots,
    }
}

/// What is known about the processes of one cgroup. `None`: not known (yet).
#[derive(Clone, Copy, Debug, Default)]
pub struct Facts<'a> {
    pub namespace: Option<&'a str>,
    pub pod_labels: Option<&'a BTreeMap<String, String>>,
    pub service_account: Option<&'a str>,
    pub container: Option<&'a str>,
    pub image: Option<&'a str>,
    pub slurm_job: Option<u64>,
    pub slurm_user: Option<&'a str>,
    pub slurm_account: Option<&'a str>,
    pub slurm_partition: Option<&'a str>,
    pub unit: Option<&'a str>,
}

/// One "any of these globs" criterion; `None` when not given.
#[derive(Clone, Debug)]
struct NameCriterion(Option<GlobSet>);

impl NameCriterion {
    fn build(patterns: &[String]) -> Result<Self, globset::Error> {
        if patterns.is_empty() {
            return Ok(Self(None));
        }
        let mut b = GlobSetBuilder::new();
        for p in patterns {
            b.add(name_glob(p)?);
        }
        Ok(Self(Some(b.build()?)))
    }

    fn holds(&self, fact: Option<&str>) -> bool {
        match &self.0 {
            None => true,
            Some(set) => fact.is_some_and(|f| set.is_match(f)),
        }
    }
}

/// A workload's identity criteria, compiled.
#[derive(Clone, Debug)]
struct MetaMatcher {
    namespace: NameCriterion,
    pod_labels: Option<LabelSelector>,
    service_account: NameCriterion,
    container: NameCriterion,
    image: NameCriterion,
    slurm_user: NameCriterion,
    slurm_account: NameCriterion,
    slurm_partition: NameCriterion,
    slurm_job: Vec<u64>,
    unit: NameCriterion,
}

impl MetaMatcher {
    fn build(m: &MetaSelector) -> Result<Self, globset::Error> {
        Ok(Self {
            namespace: NameCriterion::build(&m.namespace)?,
            pod_labels: m.pod_labels.clone(),
            service_account: NameCriterion::build(&m.service_account)?,
            container: NameCriterion::build(&m.container)?,
            image: NameCriterion::build(&m.image)?,
            slurm_user: NameCriterion::build(&m.slurm_user)?,
            slurm_account: NameCriterion::build(&m.slurm_account)?,
            slurm_partition: NameCriterion::build(&m.slurm_partition)?,
            slurm_job: m.slurm_job.clone(),
            unit: NameCriterion::build(&m.unit)?,
        })
    }

    fn holds(&self, f: &Facts) -> bool {
        self.namespace.holds(f.namespace)
            && self.pod_labels.as_ref().is_none_or(|s| f.pod_labels.is_some_and(|l| s.matches(l)))
            && self.service_account.holds(f.service_account)
            && self.container.holds(f.container)
            && self.image.holds(f.image)
            && self.slurm_user.holds(f.slurm_user)
            && self.slurm_account.holds(f.slurm_account)
            && self.slurm_partition.holds(f.slurm_partition)
            && (self.slurm_job.is_empty() || f.slurm_job.is_some_and(|j| self.slurm_job.contains(&j)))
            && self.unit.holds(f.unit)
    }
}

/// All workloads' selectors; `owner[i]` is the workload id of glob `i`.
#[derive(Clone, Debug)]
pub struct Selector {
    set: GlobSet,
    owner: Vec<u32>,
    /// Per workload id (index id - 1): identity criteria, if any.
    meta: Vec<Option<MetaMatcher>>,
    /// Workloads with no cgroup globs, in file order.
    meta_only: Vec<u32>,
}

impl Default for Selector {
    fn default() -> Self {
        Self { set: GlobSet::empty(), owner: Vec::new(), meta: Vec::new(), meta_only: Vec::new() }
    }
}

/// One workload's selector as `Selector::build` takes it.
pub struct SelectorSpec<'a> {
    pub id: u32,
    pub cgroup: &'a [String],
    pub meta: &'a MetaSelector,
}

impl Selector {
    /// `workloads` in file order, ids ascending from 1.
    pub fn build<'a>(workloads: impl IntoIterator<Item = SelectorSpec<'a>>) -> Result<Self, globset::Error> {
        let mut builder = GlobSetBuilder::new();
        let mut out = Self::default();
        for w in workloads {
            for g in w.cgroup {
                builder.add(glob(normalise(g))?);
                out.owner.push(w.id);
            }
            if w.cgroup.is_empty() {
                out.meta_only.push(w.id);
            }
            let slot = (w.id as usize).saturating_sub(1);
            if out.meta.len() <= slot {
                out.meta.resize(slot + 1, None);
            }
            out.meta[slot] = (!w.meta.is_empty()).then(|| MetaMatcher::build(w.meta)).transpose()?;
        }
        out.set = builder.build()?;
        Ok(out)
    }

    fn meta_holds(&self, id: u32, facts: &Facts) -> bool {
        match self.meta.get((id as usize).wrapping_sub(1)) {
            Some(Some(m)) => m.holds(facts),
            _ => true,
        }
    }

    /// Workload id for a cgroup path relative to the cgroup root (`""` = the
    /// root), with what is known of the cgroup's processes.
    pub fn workload_for(&self, rel_path: &str, facts: &Facts) -> Option<u32> {
        let mut path = rel_path.trim_matches('/');
        let mut hits = Vec::new();
        let mut own_level = true;
        loop {
            self.set.matches_into(path, &mut hits);
            let globbed = hits.iter().filter_map(|&i| self.owner.get(i).copied());
            let meta_only = own_level.then_some(self.meta_only.iter().copied()).into_iter().flatten();
            // Ids follow file order, so the smallest matching id wins.
            if let Some(id) = globbed.chain(meta_only).filter(|&id| self.meta_holds(id, facts)).min() {
                return Some(id);
            }
            if path.is_empty() {
                return None;
            }
            own_level = false;
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
        let none = MetaSelector::default();
        Selector::build(owned.iter().map(|(id, g)| SelectorSpec { id: *id, cgroup: g, meta: &none })).unwrap()
    }

    trait PathOnly {
        fn path_only(&self, p: &str) -> Option<u32>;
    }
    impl PathOnly for Selector {
        fn path_only(&self, p: &str) -> Option<u32> {
            Selector::workload_for(self, p, &Facts::default())
        }
    }

    #[test]
    fn star_stays_in_one_component_but_ancestors_are_inherited() {
        let s = sel(&[(1, &["training/*"])]);
        assert_eq!(s.path_only("training/job-1"), Some(1));
        // Not matched directly, but its ancestor training/job-1 is.
        assert_eq!(s.path_only("training/job-1/ctr/sub"), Some(1));
        assert_eq!(s.path_only("training"), None);
        assert_eq!(s.path_only("other/job-1"), None);
        assert_eq!(s.path_only(""), None);
    }

    #[test]
    fn double_star_crosses_slashes() {
        let s = sel(&[(1, &["jobs/**/gpu"]), (2, &["*"])]);
        assert_eq!(s.path_only("jobs/a/b/gpu"), Some(1));
        assert_eq!(s.path_only("jobs/a/gpu"), Some(1));
        // `*` only matches the first level; deeper paths inherit from it.
        assert_eq!(s.path_only("jobs/a/b/cpu"), Some(2));
        assert_eq!(s.path_only("jobs"), Some(2));
    }

    #[test]
    fn deepest_level_wins_then_file_order() {
        let s = sel(&[(1, &["a"]), (2, &["a/b", "x"]), (3, &["a/b"])]);
        assert_eq!(s.path_only("a/b/c"), Some(2));
        assert_eq!(s.path_only("a/c"), Some(1));
        assert_eq!(s.path_only("/a/b/"), Some(2));
    }

    #[test]
    fn root_path_and_match_all() {
        let s = sel(&[(1, &["training/*"]), (7, &["**"])]);
        assert_eq!(s.path_only(""), Some(7));
        assert_eq!(s.path_only("misc/x"), Some(7));
        assert_eq!(s.path_only("training/j"), Some(1));
        assert_eq!(Selector::default().path_only("a"), None);
    }

    #[test]
    fn leading_slash_is_stripped() {
        let s = sel(&[(3, &["/inference/*"])]);
        assert_eq!(s.path_only("inference/llm"), Some(3));
        assert!(glob("a/[").is_err());
    }
}
