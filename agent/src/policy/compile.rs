//! Policy → kernel map contents. Infallible: `validate.rs` already enforced
//! every limit the maps impose, so here we only translate.
use std::collections::{BTreeMap, HashMap};

use ipnet::IpNet;
use warden_common::{
    AllowKey, AllowPorts, AllowValue, DeviceAllowValue, FileAllowValue, Ipv4Key, Ipv6Key, SegmentEntries, SegmentEntry,
    SegmentInfo, Settings,
};

use super::devices::{DeviceSegmentSpec, compile_devices};
use super::files::{FileRoot, compile_files};
use super::model::{AllowRule, FileBackend, Policy, Segment, windows};
use super::prefixes::{inherited, own_entries};
use super::select::{Facts, Selector};
use crate::enrich::event::Name;

/// Reported rule of a decision: `rules[id - 1]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleInfo {
    pub id: u32,
    /// E.g. `allow[0] trainer->object-store`.
    pub label: Name,
}

/// Everything the agent writes into the kernel maps for one policy.
#[derive(Clone, Debug)]
pub struct CompiledPolicy {
    pub settings: Settings,
    pub v4: Vec<(Ipv4Key, SegmentEntries)>,
    pub v6: Vec<(Ipv6Key, SegmentEntries)>,
    /// `(segment id, info)` for every segment (network, paths or both), ids 1..=M.
    pub segment_info: Vec<(u32, SegmentInfo)>,
    /// Pairs with segments that have network entries, sorted by (workload id, segment id).
    pub allow: Vec<(AllowKey, AllowValue)>,
    /// Every protected directory tree, in file order.
    pub files: Vec<FileRoot>,
    /// Pairs with segments that have paths, sorted by (workload id, segment id).
    pub file_allow: Vec<(AllowKey, FileAllowValue)>,
    pub file_backend: FileBackend,
    /// Segments with `devices`, resolved to nodes by the agent.
    pub devices: Vec<DeviceSegmentSpec>,
    /// Pairs with device segments, sorted by (workload id, segment id).
    pub device_allow: Vec<(AllowKey, DeviceAllowValue)>,
    pub devices_config: super::model::DevicesConfig,
    /// `workloads[id - 1]` is the name of workload `id`. Names are shared
    /// with every event that carries them.
    pub workloads: Vec<Name>,
    /// `segments[id - 1]` is the name of segment `id`.
    pub segments: Vec<Name>,
    pub rules: Vec<RuleInfo>,
    selector: Selector,
}

impl Policy {
    /// Every workload's selector in file order, ids from 1.
    pub fn selector_specs(&self) -> impl Iterator<Item = super::select::SelectorSpec<'_>> {
        self.workloads.iter().enumerate().map(|(i, w)| super::select::SelectorSpec {
            id: (i + 1) as u32,
            cgroup: &w.cgroup,
            meta: &w.meta,
        })
    }

    pub fn compile(&self) -> CompiledPolicy {
        let global = self.mode;
        let settings = Settings {
            default_action: self.default_action.kernel(),
            default_mode: global.kernel(),
            log_unprotected: u8::from(self.agent.events.log_unprotected),
            _pad: [0; 5],
        };

        let table = own_entries(self);
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for net in table.keys() {
            let mut value = SegmentEntries::default();
            for (slot, own) in value.entries.iter_mut().zip(inherited(&table, net)) {
                *slot = SegmentEntry {
                    segment_id: (own.seg + 1) as u16,
                    proto_mask: own.proto,
                    _pad: 0,
                    port_lo: own.window.lo,
                    port_hi: own.window.hi,
                };
                value.count += 1;
            }
            match net {
                IpNet::V4(n) => {
                    v4.push((Ipv4Key { prefix_len: n.prefix_len().into(), addr: n.addr().octets() }, value))
                }
                IpNet::V6(n) => {
                    v6.push((Ipv6Key { prefix_len: n.prefix_len().into(), addr: n.addr().octets() }, value))
                }
            }
        }

        let segment_info = self
            .segments
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let mode = s.mode.unwrap_or(global).kernel();
                ((i + 1) as u32, SegmentInfo { mode, _pad: [0; 7] })
            })
            .collect();

        let allow = allow_table(
            self,
            |s| !s.network.is_empty(),
            |rule, rule_id, _, deny_mode| {
                let mut value = AllowValue { deny_mode, deny_rule_id: rule_id, ..Default::default() };
                for (slot, window) in value.ports.iter_mut().zip(windows(&rule.ports)) {
                    *slot = AllowPorts {
                        rule_id,
                        proto_mask: rule.protocol.mask(),
                        port_lo: window.lo,
                        port_hi: window.hi,
                        ..Default::default()
                    };
                    value.count += 1;
                }
                value
            },
            |deny_mode| AllowValue { deny_mode, ..Default::default() },
        );
        let (files, file_allow) = compile_files(self);
        let (devices, device_allow) = compile_devices(self);

        let selector = Selector::build(self.selector_specs())
            // Validation built the same set; should it ever fail, nothing is identified (fail closed).
            .unwrap_or_default();

        CompiledPolicy {
            settings,
            v4,
            v6,
            segment_info,
            allow,
            files,
            file_allow,
            file_backend: self.agent.files.backend,
            devices,
            device_allow,
            devices_config: self.agent.devices.clone(),
            workloads: self.workloads.iter().map(|w| Name::from(w.name.as_str())).collect(),
            segments: self.segments.iter().map(|s| Name::from(s.name.as_str())).collect(),
            rules: self
                .allow
                .iter()
                .enumerate()
                .map(|(i, r)| RuleInfo { id: (i + 1) as u32, label: r.label().into() })
                .collect(),
            selector,
        }
    }
}

impl CompiledPolicy {
    /// Workload id for a cgroup path relative to `agent.cgroupRoot` (`""` = the
    /// root), given what is known about the cgroup's processes.
    pub fn workload_for(&self, rel_path: &str, facts: &Facts) -> Option<u32> {
        self.selector.workload_for(rel_path, facts)
    }

    pub fn workload_name(&self, id: u32) -> Option<&str> {
        let i = (id as usize).checked_sub(1)?;
        self.workloads.get(i).map(|n| &**n)
    }

    /// Workload `id`'s name for an event; `(stale)` for an id this policy
    /// does not have (a record from before a reload).
    pub fn workload(&self, id: u32) -> Name {
        let i = (id as usize).wrapping_sub(1);
        self.workloads.get(i).cloned().unwrap_or_else(|| "(stale)".into())
    }

    pub fn segment(&self, id: u16) -> Option<Name> {
        self.segments.get((id as usize).checked_sub(1)?).cloned()
    }

    pub fn rule(&self, id: u32) -> Option<Name> {
        self.rules.get((id as usize).checked_sub(1)?).map(|r| r.label.clone())
    }

    pub fn segment_name(&self, id: u16) -> Option<&str> {
        let i = (id as usize).checked_sub(1)?;
        self.segments.get(i).map(|n| &**n)
    }

    /// Whether the policy protects any device node (the cgroup/dev hook is needed).
    pub fn has_device_segments(&self) -> bool {
        !self.devices.is_empty()
    }

    /// Whether some rule grants `gpus: assigned` (kubelet must be asked).
    pub fn uses_assigned_gpus(&self) -> bool {
        self.device_allow.iter().any(|(_, v)| v.gpus_from == warden_common::GPUS_ASSIGNED)
    }

    pub fn rule_label(&self, id: u32) -> Option<&str> {
        let i = (id as usize).checked_sub(1)?;
        self.rules.get(i).map(|r| &*r.label)
    }
}

/// One kernel allow table, sorted by (workload id, segment id): for each
/// pair of a segment of this `kind` that a rule covers, `grant(rule, rule
/// id, segment, deny mode)` from the first such rule (validation rejects a
/// second); for the pairs no rule covers, an entry carrying only the
/// workload's own `mode`, which would otherwise fall back to the segment's.
/// The deny mode is the first set of: rule, workload, segment, global.
pub(super) fn allow_table<V>(
    policy: &Policy,
    kind: impl Fn(&Segment) -> bool,
    grant: impl Fn(&AllowRule, u32, &Segment, u8) -> V,
    mode_only: impl Fn(u8) -> V,
) -> Vec<(AllowKey, V)> {
    let mut table: BTreeMap<(u32, u16), V> = BTreeMap::new();
    for (rule_id, rule, wi, si) in rule_pairs(policy) {
        let segment = &policy.segments[si];
        let key = ((wi + 1) as u32, (si + 1) as u16);
        if !kind(segment) || table.contains_key(&key) {
            continue;
        }
        let mode = rule.mode.or(policy.workloads[wi].mode).or(segment.mode).unwrap_or(policy.mode);
        table.insert(key, grant(rule, rule_id, segment, mode.kernel()));
    }
    for (wi, w) in policy.workloads.iter().enumerate() {
        let Some(mode) = w.mode else { continue };
        for (si, _) in policy.segments.iter().enumerate().filter(|(_, s)| kind(s)) {
            table.entry(((wi + 1) as u32, (si + 1) as u16)).or_insert_with(|| mode_only(mode.kernel()));
        }
    }
    table.into_iter().map(|((workload_id, segment_id), v)| (AllowKey { workload_id, segment_id, _pad: 0 }, v)).collect()
}

/// Every (rule id, rule, workload index, segment index) an allow rule covers,
/// names resolved to their first definition; unknown names are skipped
/// (validation reports them).
pub(super) fn rule_pairs(policy: &Policy) -> Vec<(u32, &super::model::AllowRule, usize, usize)> {
    let seg_ids: HashMap<&str, usize> =
        policy.segments.iter().enumerate().rev().map(|(i, s)| (s.name.as_str(), i)).collect();
    let wl_ids: HashMap<&str, usize> =
        policy.workloads.iter().enumerate().rev().map(|(i, w)| (w.name.as_str(), i)).collect();
    let mut out = Vec::new();
    for (r, rule) in policy.allow.iter().enumerate() {
        for w in &rule.workloads {
            let Some(&wi) = wl_ids.get(w.name.as_str()) else { continue };
            for s in &rule.segments {
                let Some(&si) = seg_ids.get(s.name.as_str()) else { continue };
                out.push(((r + 1) as u32, rule, wi, si));
            }
        }
    }
    out
}
