//! Typed reader: marked YAML tree → model, checking shapes, types and
//! single-value rules. Cross-item rules live in `validate.rs`.
//!
//! Errors are collected, never fatal: a bad item is reported and skipped (or
//! kept with its raw name, so later references to it don't cascade).

use warden_common::{MAX_ALLOW_PORTS, MAX_SEGMENTS, MAX_WORKLOADS};

use super::Config;
use super::error::{Diag, Loc, Origin, quoted};
use super::model::*;
use super::reader::{MapView, Reader, describe};
use super::values::{parse_cidr, port_window, protected_path};
use super::yaml::{Node, Value};
use crate::settings::AgentConfig;

const TOP_KEYS: &[&str] = &["version", "mode", "defaultAction", "agent", "segments", "workloads", "allow"];
const DEVICES_KEYS: &[&str] = &["gpus", "nvidiaControl", "paths"];
const SEGMENT_KEYS: &[&str] = &["name", "description", "mode", "network", "paths", "devices"];
const NETWORK_KEYS: &[&str] = &["cidr", "ports", "protocol"];
const WORKLOAD_KEYS: &[&str] = &["name", "mode", "selector"];
const RULE_KEYS: &[&str] =
    &["workload", "workloads", "segment", "segments", "ports", "protocol", "access", "gpus", "mode", "sockets"];

/// Reads the whole policy; `root` is `None` for an empty stream.
pub(crate) fn read(root: Option<&Node>, diag: &mut Diag) -> Config {
    let mut agent = AgentConfig::default();
    let mut policy = Policy {
        version: 1,
        mode: Mode::default(),
        default_action: DefaultAction::default(),
        segments: Vec::new(),
        workloads: Vec::new(),
        allow: Vec::new(),
        source_sha256: String::new(),
    };
    let root = match root {
        Some(node) if node.value != Value::Null => node,
        other => {
            let loc = other.map_or(Loc { line: 1, column: 1 }, |n| n.loc);
            diag.at(loc, "document", "the policy is empty; it needs at least `version: 1`");
            return Config { agent, policy, warnings: Vec::new() };
        }
    };
    if !matches!(root.value, Value::Map(_)) {
        let found = describe(root);
        diag.at(root.loc, "document", format!("the policy must be a mapping (`version: 1`, ...), found {found}"));
        return Config { agent, policy, warnings: Vec::new() };
    }
    let mut r = Reader { diag };
    let Some(top) = r.map(root, "", TOP_KEYS) else {
        return Config { agent, policy, warnings: Vec::new() };
    };

    if let Some(node) = r.required(&top, "version") {
        r.integer(node, "version", 1..=1, |v| format!("unsupported version {v}; this agent understands version 1"));
    }
    if let Some(node) = top.get("mode") {
        policy.mode = r.mode(node, "mode").unwrap_or_default();
    }
    if let Some(node) = top.get("defaultAction") {
        policy.default_action = r.default_action(node, "defaultAction").unwrap_or_default();
    }
    if let Some(node) = top.get("agent") {
        agent = r.agent(node);
    }
    for (i, item) in r.list_or_null(top.get("segments"), "segments", MAX_SEGMENTS as usize).iter().enumerate() {
        if let Some(s) = r.segment(item, &format!("segments[{i}]")) {
            policy.segments.push(s);
        }
    }
    for (i, item) in r.list_or_null(top.get("workloads"), "workloads", MAX_WORKLOADS as usize).iter().enumerate() {
        if let Some(w) = r.workload(item, &format!("workloads[{i}]")) {
            policy.workloads.push(w);
        }
    }
    for (i, item) in r.list_or_null(top.get("allow"), "allow", usize::MAX).iter().enumerate() {
        if let Some(rule) = r.rule(item, &format!("allow[{i}]")) {
            policy.allow.push(rule);
        }
    }
    Config { agent, policy, warnings: Vec::new() }
}

impl Reader<'_> {
    /// `devices:` of a segment: `gpus: all | [indices]`, `nvidiaControl`
    /// (default true when `gpus` is given), `paths: [device node paths]`.
    fn devices(&mut self, node: &Node, path: &str) -> Option<DeviceSpec> {
        let m = self.map(node, path, DEVICES_KEYS)?;
        // Whether a key was written, valid or not: an invalid value is
        // reported once, never again as "lists no devices" and the like.
        let gpus_given = m.get("gpus").is_some();
        let gpus = m.get("gpus").and_then(|n| self.gpu_indices(n, &m.field("gpus"), "all"));
        let gpus = gpus.map(|g| g.map_or(GpuSelection::All, GpuSelection::Indices));
        let control = m.get("nvidiaControl").map(|n| self.boolean(n, &m.field("nvidiaControl")));
        let nvidia_control = control.flatten().unwrap_or(gpus_given);
        let mut paths = Vec::new();
        if let Some(list) = m.get("paths") {
            let field = m.field("paths");
            for (i, item) in self.list(list, &field).unwrap_or_default().iter().enumerate() {
                let f = format!("{field}[{i}]");
                let Some(text) = self.nonempty_string(item, &f) else { continue };
                match super::values::device_pattern(&text) {
                    Ok(pattern) => paths.push(DevicePath { pattern, origin: Origin::new(item.loc, f) }),
                    Err(reason) => self.err(item, &f, reason),
                }
            }
        }
        let control_given = matches!(control, Some(Some(true)) | Some(None));
        if !gpus_given && !control_given && m.get("paths").is_none() {
            self.err(node, path, "lists no devices: give `gpus`, `nvidiaControl: true` or `paths`");
        }
        Some(DeviceSpec { gpus, gpus_given, nvidia_control, paths, origin: Origin::new(node.loc, path) })
    }

    /// `keyword` (→ `Some(None)`) or a non-empty list of GPU indices 0..=253.
    fn gpu_indices(&mut self, node: &Node, field: &str, keyword: &str) -> Option<Option<Vec<u16>>> {
        if let Value::Scalar(s, _) = &node.value {
            if s == keyword {
                return Some(None);
            }
            self.err(node, field, format!("expected `{keyword}` or a list of GPU indices, found {}", quoted(s)));
            return None;
        }
        let items = self.list(node, field)?;
        let mut out: Vec<u16> = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let f = format!("{field}[{i}]");
            let max = warden_common::NVIDIA_MAX_GPUS as i64 - 1;
            let Some(v) = self.integer(item, &f, 0..=max, |v| format!("GPU index {v} is out of range 0-{max}")) else {
                ok = false;
                continue;
            };
            if out.contains(&(v as u16)) {
                self.err(item, &f, format!("GPU {v} is listed twice"));
            } else {
                out.push(v as u16);
            }
        }
        // An empty list is reported by `list`; bad items each by themselves.
        (ok && !out.is_empty()).then_some(Some(out))
    }

    fn segment(&mut self, node: &Node, path: &str) -> Option<Segment> {
        let m = self.map(node, path, SEGMENT_KEYS)?;
        let name_node = self.required(&m, "name");
        let name = name_node.and_then(|n| self.name(n, &m.field("name")));
        // Prose: may span lines and be indented with tabs.
        let description = m.get("description").and_then(|n| self.text(n, &m.field("description"), &['\t', '\n']));
        let mode = self.opt_mode(&m, "mode");
        let mut network = Vec::new();
        if let Some(list) = m.get("network") {
            for (i, item) in self.list(list, &m.field("network")).unwrap_or_default().iter().enumerate() {
                if let Some(entry) = self.network_entry(item, &format!("{path}.network[{i}]")) {
                    network.push(entry);
                }
            }
        }
        let mut paths = Vec::new();
        if let Some(list) = m.get("paths") {
            let field = m.field("paths");
            for (i, item) in self.list(list, &field).unwrap_or_default().iter().enumerate() {
                if let Some(entry) = self.path_entry(item, &format!("{field}[{i}]")) {
                    paths.push(entry);
                }
            }
        }
        let devices = m.get("devices").and_then(|n| self.devices(n, &m.field("devices")));
        if m.get("network").is_none() && m.get("paths").is_none() && m.get("devices").is_none() {
            self.diag.at(m.loc, &m.field("network"), "missing required key `network` (or `paths`, or `devices`)");
        }
        let origin = Origin::new(name_node?.loc, m.field("name"));
        Some(Segment { name: name?, description, mode, network, paths, devices, origin })
    }

    fn path_entry(&mut self, node: &Node, field: &str) -> Option<PathEntry> {
        let text = self.nonempty_string(node, field)?;
        match protected_path(&text) {
            Ok(path) => Some(PathEntry { path, origin: Origin::new(node.loc, field) }),
            Err(reason) => {
                self.err(node, field, reason);
                None
            }
        }
    }

    fn network_entry(&mut self, node: &Node, path: &str) -> Option<NetworkEntry> {
        let m = self.map(node, path, NETWORK_KEYS)?;
        let ports = m.get("ports").and_then(|n| self.ports(n, &m.field("ports"), usize::MAX));
        let protocol = m.get("protocol").and_then(|n| self.protocol(n, &m.field("protocol")));
        let cidr_node = self.required(&m, "cidr")?;
        let field = m.field("cidr");
        let text = self.string(cidr_node, &field)?;
        let cidr = match parse_cidr(&text) {
            Ok(net) => net,
            Err(reason) => {
                self.err(cidr_node, &field, reason);
                return None;
            }
        };
        Some(NetworkEntry {
            cidr,
            ports: ports.unwrap_or_default(),
            protocol: protocol.unwrap_or_default(),
            origin: Origin::new(cidr_node.loc, field),
        })
    }

    /// A non-empty list of ports/ranges, each window listed once.
    fn ports(&mut self, node: &Node, field: &str, max: usize) -> Option<Vec<PortRange>> {
        let items = self.list(node, field)?;
        let mut out: Vec<PortRange> = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let item_field = format!("{field}[{i}]");
            match port_window(item) {
                Ok(w) if out.contains(&w) => {
                    self.err(item, &item_field, format!("port {w} is listed twice"));
                }
                Ok(w) => out.push(w),
                Err(reason) => {
                    self.err(item, &item_field, reason);
                    ok = false;
                }
            }
        }
        if out.len() > max {
            let reason =
                format!("{} port windows; a rule can have at most {max} (use ranges like \"8000-8100\")", out.len());
            self.err(node, field, reason);
            return None;
        }
        ok.then_some(out)
    }

    fn workload(&mut self, node: &Node, path: &str) -> Option<Workload> {
        let m = self.map(node, path, WORKLOAD_KEYS)?;
        let name_node = self.required(&m, "name");
        let name = name_node.and_then(|n| self.name(n, &m.field("name")));
        let mode = self.opt_mode(&m, "mode");
        let selector = self.required(&m, "selector").and_then(|sel| self.selector(sel, &m.field("selector")));
        let (cgroup, meta) = selector.unwrap_or_default();
        let origin = Origin::new(name_node?.loc, m.field("name"));
        Some(Workload { name: name?, mode, cgroup, meta, origin })
    }

    fn rule(&mut self, node: &Node, path: &str) -> Option<AllowRule> {
        let m = self.map(node, path, RULE_KEYS)?;
        let workloads = self.refs(&m, "workload", "workloads");
        let sockets = m.get("sockets").map(|n| self.sockets(n, &m.field("sockets")));
        // A rule that only grants sockets names no segment.
        let segments = match &sockets {
            Some(_) if m.get("segment").is_none() && m.get("segments").is_none() => Some(Vec::new()),
            _ => self.refs(&m, "segment", "segments"),
        };
        let sockets_origin =
            m.get("sockets").map_or_else(|| Origin::new(m.loc, path), |n| Origin::new(n.loc, m.field("sockets")));
        let ports = m.get("ports").and_then(|n| self.ports(n, &m.field("ports"), MAX_ALLOW_PORTS));
        let protocol = m.get("protocol").and_then(|n| self.protocol(n, &m.field("protocol")));
        let access_options = [("read", Access::Read), ("read-write", Access::ReadWrite)];
        let access = m.get("access").and_then(|n| self.keyword(n, &m.field("access"), &access_options));
        let mode = self.opt_mode(&m, "mode");
        let origin = Origin::new(m.loc, path);
        let narrowing_origin = ["ports", "protocol"]
            .iter()
            .find_map(|k| m.get(k).map(|n| Origin::new(n.loc, m.field(k))))
            .unwrap_or_else(|| origin.clone());
        let access_origin = m.get("access").map_or_else(|| origin.clone(), |n| Origin::new(n.loc, m.field("access")));
        let gpus = m.get("gpus").and_then(|n| self.gpu_indices(n, &m.field("gpus"), "assigned"));
        let gpus = gpus.map(|g| g.map_or(RuleGpus::Assigned, RuleGpus::Listed));
        let gpus_origin = m.get("gpus").map_or_else(|| origin.clone(), |n| Origin::new(n.loc, m.field("gpus")));
        Some(AllowRule {
            workloads: workloads?,
            segments: segments?,
            ports: ports.unwrap_or_default(),
            protocol: protocol.unwrap_or_default(),
            access,
            gpus,
            gpus_origin,
            mode,
            sockets: sockets.flatten().unwrap_or_default(),
            sockets_origin,
            origin,
            narrowing_origin,
            access_origin,
        })
    }

    /// `sockets: [raw, packet]`: each kind once, at least one (`list`
    /// refuses an empty one).
    fn sockets(&mut self, node: &Node, field: &str) -> Option<Vec<SocketKind>> {
        let options = [("raw", SocketKind::Raw), ("packet", SocketKind::Packet)];
        let items = self.list(node, field)?;
        let mut out = Vec::new();
        for (i, n) in items.iter().enumerate() {
            let f = format!("{field}[{i}]");
            let Some(kind) = self.keyword(n, &f, &options) else { continue };
            if out.contains(&kind) {
                self.err(n, &f, format!("`{kind}` is listed twice"));
                continue;
            }
            out.push(kind);
        }
        Some(out)
    }

    /// Exactly one of `one: name` or `many: [names]`.
    fn refs(&mut self, m: &MapView, one: &str, many: &str) -> Option<Vec<NameRef>> {
        match (m.get(one), m.get(many)) {
            (Some(_), Some(n)) => {
                self.err(n, &m.field(many), format!("give either `{one}` or `{many}`, not both"));
                None
            }
            (None, None) => {
                let reason = format!("missing required key `{one}` (or `{many}`)");
                self.diag.at(m.loc, &m.field(one), reason);
                None
            }
            (Some(n), None) => {
                let field = m.field(one);
                let name = self.string(n, &field)?;
                Some(vec![NameRef { name, origin: Origin::new(n.loc, field) }])
            }
            (None, Some(list)) => {
                let field = m.field(many);
                let mut out: Vec<NameRef> = Vec::new();
                for (i, n) in self.list(list, &field)?.iter().enumerate() {
                    let f = format!("{field}[{i}]");
                    let Some(name) = self.string(n, &f) else {
                        continue;
                    };
                    if out.iter().any(|r| r.name == name) {
                        self.err(n, &f, format!("{} is listed twice", quoted(&name)));
                        continue;
                    }
                    out.push(NameRef { name, origin: Origin::new(n.loc, f) });
                }
                Some(out)
            }
        }
    }
}
