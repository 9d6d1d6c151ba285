//! Whether the DaemonSet that runs this agent still exists. At SIGTERM that
//! tells an uninstall (`helm uninstall`, `kubectl delete`: the DaemonSet is
//! gone or being deleted) from a restart, an upgrade or a drain (it is
//! still there), which must keep enforcement pinned for the next agent.
use std::{fmt, str::FromStr, time::Duration};

use ::kube::{Api, Client};
use k8s_openapi::api::apps::v1::DaemonSet;

use crate::settings::KubernetesConfig;

/// `NAMESPACE/NAME` of a DaemonSet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub namespace: String,
    pub name: String,
}

impl FromStr for Owner {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (namespace, name) = s.split_once('/').ok_or_else(|| format!("`{s}`: expected NAMESPACE/DAEMONSET"))?;
        let valid = |p: &str| {
            !p.is_empty()
                && p.len() <= 253
                && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        };
        if !valid(namespace) || !valid(name) {
            return Err(format!("`{s}`: namespace and name must be Kubernetes names (lowercase, digits, `-`, `.`)"));
        }
        Ok(Self { namespace: namespace.into(), name: name.into() })
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// How long the question may take: the pod's grace period is short, and
/// no answer keeps enforcement (the safe side).
const ASK_TIMEOUT: Duration = Duration::from_secs(5);

/// `Ok(true)`: the DaemonSet is gone or being deleted. Errors (no API, no
/// answer in time, a denied request) say why.
pub async fn deleted(owner: &Owner, k: &KubernetesConfig) -> Result<bool, String> {
    let config = super::pods::client_config(k)?.ok_or("no Kubernetes API is configured")?;
    let client = Client::try_from(config).map_err(|e| format!("Kubernetes client: {e}"))?;
    let api: Api<DaemonSet> = Api::namespaced(client, &owner.namespace);
    match tokio::time::timeout(ASK_TIMEOUT, api.get_opt(&owner.name)).await {
        Err(_) => Err(format!("no answer within {ASK_TIMEOUT:?}")),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(None)) => Ok(true),
        Ok(Ok(Some(ds))) => Ok(ds.metadata.deletion_timestamp.is_some()),
    }
}

#[cfg(test)]
mod tests {
    use super::Owner;

    #[test]
    fn owners_parse_and_bad_ones_say_why() {
        let o: Owner = "warden-system/warden".parse().unwrap();
        assert_eq!((o.namespace.as_str(), o.name.as_str()), ("warden-system", "warden"));
        assert_eq!(o.to_string(), "warden-system/warden");
        for bad in ["warden", "/warden", "ns/", "NS/warden", "ns/war den", "ns/a/b"] {
            let e = bad.parse::<Owner>().unwrap_err();
            assert!(e.contains(bad), "{bad}: {e}");
        }
    }
}
