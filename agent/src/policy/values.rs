//! Single-value syntax: CIDRs, port windows and protected paths.
use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::{IpNet, Ipv4Net};

use super::error::{quoted, shown};
use super::model::PortRange;
use super::reader::describe;
use super::yaml::{Node, Plain, Style, Value, resolve_plain};

/// `443`, `"443"` or `"9000-9100"`, within 1..=65535.
pub(super) fn port_window(node: &Node) -> Result<PortRange, String> {
    let bad = || format!("expected a port (1-65535) or a range \"low-high\", found {}", describe(node));
    let (text, is_quoted) = match &node.value {
        Value::Scalar(s, style) => (s.as_str(), *style == Style::Quoted),
        _ => return Err(bad()),
    };
    if !is_quoted && !matches!(resolve_plain(text), Plain::Int(_) | Plain::BigInt | Plain::Str) {
        return Err(bad());
    }
    let (lo, hi) = text.split_once('-').unwrap_or((text, text));
    let parse = |s: &str| -> Result<u16, String> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        match s.parse::<u32>() {
            Ok(v) if (1..=65535).contains(&v) => Ok(v as u16),
            _ => Err(format!("port {} is out of range 1-65535", shown(s))),
        }
    };
    let (lo, hi) = (parse(lo)?, parse(hi)?);
    if lo > hi {
        return Err(format!("port range {lo}-{hi} is reversed; write {hi}-{lo}"));
    }
    Ok(PortRange { lo, hi })
}

/// Parses a CIDR (or bare address = host route), rejects host bits and maps
/// `::ffff:a.b.c.d/len` (len >= 96) to IPv4, as the kernel hooks do.
pub fn parse_cidr(text: &str) -> Result<IpNet, String> {
    let parsed =
        if text.contains('/') { text.parse::<IpNet>().ok() } else { text.parse::<IpAddr>().ok().map(IpNet::from) };
    let Some(net) = parsed else {
        return Err(format!("invalid CIDR {}; expected e.g. 10.20.0.0/16 or fd00:20::/48", quoted(text)));
    };
    if net.trunc() != net {
        return Err(format!("host bits set in `{text}`; did you mean {}?", net.trunc()));
    }
    if let IpNet::V6(v6) = net
        && let (Some(v4), true) = (v6.addr().to_ipv4_mapped(), v6.prefix_len() >= 96)
        && let Ok(n) = Ipv4Net::new(v4, v6.prefix_len() - 96)
    {
        return Ok(IpNet::V4(n));
    }
    Ok(net)
}

/// Longest protected path accepted, in bytes (`PATH_MAX` less the NUL).
pub const MAX_PATH_BYTES: usize = 4095;

/// A protected directory tree: absolute, normalised as written (no `.`, `..`
/// or empty components, no trailing `/`), and not `/` itself. Paths are not
/// resolved here; the agent resolves them on the node.
pub(super) fn protected_path(text: &str) -> Result<PathBuf, String> {
    if !text.starts_with('/') {
        return Err(format!("{} must be an absolute path", quoted(text)));
    }
    if text.len() > MAX_PATH_BYTES {
        return Err(format!("path is {} bytes long; at most {MAX_PATH_BYTES} are supported", text.len()));
    }
    if text.split('/').all(str::is_empty) {
        return Err("protecting / would lock the node; list the directories to protect".into());
    }
    let parts: Vec<&str> = text[1..].split('/').collect();
    if parts.iter().any(|c| *c == "." || *c == "..") {
        return Err(format!("{} must not contain `.` or `..` components; write the path it means", quoted(text)));
    }
    if parts.iter().any(|c| c.is_empty()) {
        let fixed: Vec<&str> = parts.into_iter().filter(|c| !c.is_empty()).collect();
        let fixed = quoted(&format!("/{}", fixed.join("/")));
        return Err(format!("{} has an empty component or a trailing `/`; write {fixed}", quoted(text)));
    }
    Ok(PathBuf::from(text))
}

/// A device node path (usually under /dev): absolute and normalised; `*`,
/// `?` and `[...]` are allowed in the last component only (matched when the
/// agent resolves nodes, so nodes that appear later are picked up). What
/// is protected is the device number, wherever a node for it is made.
pub(super) fn device_pattern(text: &str) -> Result<PathBuf, String> {
    let path = protected_path(text)?;
    let wild = |c: &str| c.contains(['*', '?', '[']);
    let parts: Vec<&str> = text[1..].split('/').collect();
    if parts[..parts.len() - 1].iter().any(|c| wild(c)) {
        return Err(format!("{}: wildcards are only supported in the last component", quoted(text)));
    }
    if let Some(last) = parts.last().filter(|c| wild(c)) {
        globset::Glob::new(last).map_err(|e| format!("invalid pattern {}: {}", quoted(text), e.kind()))?;
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        assert_eq!(parse_cidr("10.20.0.0/16").unwrap().to_string(), "10.20.0.0/16");
        assert_eq!(parse_cidr("10.0.0.1").unwrap().to_string(), "10.0.0.1/32");
        assert_eq!(parse_cidr("fd00::1").unwrap().to_string(), "fd00::1/128");
        assert_eq!(parse_cidr("::ffff:10.1.2.0/120").unwrap().to_string(), "10.1.2.0/24");
        assert_eq!(parse_cidr("::ffff:0:0/96").unwrap().to_string(), "0.0.0.0/0");
        assert_eq!(parse_cidr("::/80").unwrap().to_string(), "::/80");
        assert_eq!(parse_cidr("::ffff:0:0/80").unwrap_err(), "host bits set in `::ffff:0:0/80`; did you mean ::/80?");
        assert_eq!(
            parse_cidr("10.20.1.0/16").unwrap_err(),
            "host bits set in `10.20.1.0/16`; did you mean 10.20.0.0/16?"
        );
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert!(parse_cidr("example.com").is_err());
    }

    #[test]
    fn protected_paths() {
        assert_eq!(protected_path("/mnt/datasets").unwrap(), PathBuf::from("/mnt/datasets"));
        assert_eq!(protected_path("/a b/..x/.y").unwrap(), PathBuf::from("/a b/..x/.y"));
        assert_eq!(protected_path("data").unwrap_err(), "`data` must be an absolute path");
        assert_eq!(
            protected_path("/").unwrap_err(),
            "protecting / would lock the node; list the directories to protect"
        );
        assert_eq!(protected_path("//").unwrap_err(), protected_path("/").unwrap_err());
        assert_eq!(
            protected_path("/a//b/").unwrap_err(),
            "`/a//b/` has an empty component or a trailing `/`; write `/a/b`"
        );
        assert_eq!(
            protected_path("/a/../b").unwrap_err(),
            "`/a/../b` must not contain `.` or `..` components; write the path it means"
        );
        assert!(protected_path("/a/.").is_err());
        let long = format!("/{}", "x".repeat(MAX_PATH_BYTES));
        assert_eq!(protected_path(&long).unwrap_err(), "path is 4096 bytes long; at most 4095 are supported");
        assert!(protected_path(&long[..MAX_PATH_BYTES]).is_ok());
    }

    #[test]
    fn device_patterns() {
        assert_eq!(device_pattern("/dev/infiniband/uverbs*").unwrap(), PathBuf::from("/dev/infiniband/uverbs*"));
        assert!(device_pattern("/dev/nvidia0").is_ok());
        assert_eq!(device_pattern("dev/x").unwrap_err(), "`dev/x` must be an absolute path");
        assert!(device_pattern("/dev/*/uverbs0").unwrap_err().contains("last component"));
        assert!(device_pattern("/dev/[").unwrap_err().contains("invalid pattern"));
    }
}
