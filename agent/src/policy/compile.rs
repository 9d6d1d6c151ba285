//! Policy → kernel map contents. Infallible: `validate.rs` already enforced
//! every limit the maps impose, so here we only translate.
use ipnet::IpNet;
use warden_common::{
    AllowKey, AllowPorts, AllowValue, DeviceAllowValue, FileAllowValue, Ipv4Key, Ipv6Key, SUMMARY_WORDS,
    SegmentEntries, SegmentEntry, SegmentInfo, Settings, SocketGrant, summary_cover,
};

use super::allow::allow_table;
use super::devices::{DeviceSegmentSpec, compile_devices};
use super::files::{FileRoot, compile_files};
use super::model::{Policy, windows};
use super::prefixes::{inherited, own_entries};
use super::select::{Facts, Selector};
use crate::name::Name;

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
    /// Segments with `devices`, resolved to nodes by the agent.
    pub devices: Vec<DeviceSegmentSpec>,
    /// Pairs with device segments, sorted by (workload id, segment id).
    pub device_allow: Vec<(AllowKey, DeviceAllowValue)>,
    /// `CLEAR_V4` / `CLEAR_V6`: the /16s no segment prefix reaches into.
    pub clear_v4: Vec<u64>,
    pub clear_v6: Vec<u64>,
    /// `SOCKET_GRANTS` by workload id; index 0 is unidentified cgroups.
    pub socket_grants: Vec<SocketGrant>,
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
            // A daemon setting (`agent.events`): the kernel maps add it.
            log_unprotected: 0,
            guard_sockets: u8::from(self.segments.iter().any(|s| !s.network.is_empty())),
            _pad: [0; 4],
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

        let clear_v4 = summary(v4.iter().map(|(k, _)| (u16::from_be_bytes([k.addr[0], k.addr[1]]), k.prefix_len)));
        let clear_v6 = summary(v6.iter().map(|(k, _)| (u16::from_be_bytes([k.addr[0], k.addr[1]]), k.prefix_len)));
        CompiledPolicy {
            settings,
            v4,
            v6,
            segment_info,
            allow,
            files,
            file_allow,
            devices,
            device_allow,
            clear_v4,
            clear_v6,
            socket_grants: socket_grants(self),
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

    /// Whether the policy protects any directory tree (file hooks are needed).
    pub fn has_file_segments(&self) -> bool {
        !self.files.is_empty()
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

/// Raw and packet sockets per workload id: granted by `sockets:` of the
/// rules naming the workload (the first such rule is reported), refused
/// otherwise in the workload's mode, else the policy's.
fn socket_grants(policy: &Policy) -> Vec<SocketGrant> {
    let global = policy.mode.kernel();
    let mut out = vec![SocketGrant { deny_mode: global, ..Default::default() }];
    for w in &policy.workloads {
        let mut g = SocketGrant { deny_mode: w.mode.map_or(global, |m| m.kernel()), ..Default::default() };
        for (i, rule) in policy.allow.iter().enumerate() {
            if rule.sockets.is_empty() || !rule.workloads.iter().any(|r| r.name == w.name) {
                continue;
            }
            if g.rule_id == 0 {
                g.rule_id = (i + 1) as u32;
            }
            g.grants |= rule.sockets.iter().fold(0, |bits, k| bits | k.bit());
        }
        out.push(g);
    }
    out
}

/// The summary bitmap of a family's prefixes: (first 16 bits, length).
fn summary(prefixes: impl Iterator<Item = (u16, u32)>) -> Vec<u64> {
    let mut words = vec![u64::MAX; SUMMARY_WORDS as usize];
    for (top16, len) in prefixes {
        summary_cover(&mut words, top16, len);
    }
    words
}
