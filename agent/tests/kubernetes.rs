//! Identity from the Kubernetes API: pods selected by namespace, labels,
//! service account, container and image, on kubelet-shaped cgroup trees with
//! real processes and real hooks. The API server is
//! `warden_testkit::kube_api::FakeApiServer` serving the responses in
//! agent/tests/recordings/kubernetes (see the README there for how they were made).
mod harness;

use harness::*;
use serde_json::Value;

const REC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/recordings/kubernetes/");

fn recording(name: &str) -> String {
    std::fs::read_to_string(format!("{REC}{name}")).unwrap_or_else(|e| panic!("{REC}{name}: {e}"))
}

/// (pod name → (uid, bare container id)) from a recorded pod list.
fn pods_of(list: &str) -> std::collections::HashMap<String, (String, String)> {
    let v: Value = serde_json::from_str(list).unwrap();
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let cid = p["status"]["containerStatuses"][0]["containerID"].as_str().unwrap();
            let cid = cid.split_once("://").unwrap().1.to_string();
            (str_of(&p["metadata"], "name").to_string(), (str_of(&p["metadata"], "uid").to_string(), cid))
        })
        .collect()
}

/// kubelet's systemd-driver layout for a burstable pod's container.
fn container_cgroup(tree: &TestTree, uid: &str, cid: &str) -> std::path::PathBuf {
    let u = uid.replace('-', "_");
    tree.mkdir(&format!(
        "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{u}.slice/cri-containerd-{cid}.scope"
    ))
}

/// A fake API server with the recorded pod list, and the kubelet-shaped
/// cgroups of its two pods (`trainer-0`, `web-0`) in a fresh test tree.
struct Setup {
    _rt: tokio::runtime::Runtime,
    api: warden_testkit::kube_api::FakeApiServer,
    server: warden_testkit::kube_api::ApiHandle,
    initial: String,
    pods: std::collections::HashMap<String, (String, String)>,
    tree: TestTree,
    trainer: std::path::PathBuf,
    web: std::path::PathBuf,
    port: u16,
}

impl Setup {
    fn new(name: &str) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let api = warden_testkit::kube_api::FakeApiServer::new();
        let server = rt.block_on(api.serve()).unwrap();
        let initial = recording("list-initial.json");
        let pods = pods_of(&initial);
        let tree = TestTree::new(name);
        let trainer = container_cgroup(&tree, &pods["trainer-0"].0, &pods["trainer-0"].1);
        let web = container_cgroup(&tree, &pods["web-0"].0, &pods["web-0"].1);
        let port = tcp_listener("127.0.0.2");
        Self { _rt: rt, api, server, initial, pods, tree, trainer, web, port }
    }
}

#[test]
fn pods_are_identified_from_the_api_and_follow_label_changes_and_resyncs() {
    let Setup { _rt, api, server, initial, pods, tree, trainer, web, port } = Setup::new("k8s-api");
    let yaml = format!(
        r#"
version: 1
agent:
  events: {{ allowed: each }}
  kubernetes:
    apiServer: {url}
{segments}workloads:
  - name: trainer
    selector:
      namespace: ml-training
      podLabels:
        matchLabels: {{app: trainer}}
        matchExpressions:
          - {{key: tier, operator: In, values: [gpu]}}
      serviceAccount: trainer
      container: main
      image: "nvcr.io/nvidia/pytorch:*"
  - name: web
    selector:
      namespace: default
allow:
  - workload: trainer
    segment: store
"#,
        url = server.url,
        segments = store_segment(port)
    );
    let agent = Agent::start(&tree, &yaml);
    let allowed = |cg: &std::path::Path| netprobe(cg, "tcp", "127.0.0.2", port).ok();

    // The API does not answer yet: the pod's identity is unknown, so it
    // stays unidentified and the protected segment is closed to it.
    agent.eventually("the failed list shows in status", || {
        agent.status()["identity"]["kubernetes"]["errors"].as_u64() > Some(0)
    });
    let p = netprobe(&trainer, "tcp", "127.0.0.2", port);
    assert!(p.eperm(), "no metadata yet: fail closed: {p:?}");
    assert_eq!(agent.status()["identity"]["kubernetes"]["state"], "retrying");

    api.queue_list(initial);
    agent.eventually("the trainer pod is identified", || allowed(&trainer));
    let s = agent.status();
    assert_eq!(s["identity"]["kubernetes"]["state"], "synced", "{s}");
    assert_eq!(s["identity"]["kubernetes"]["objects"], 2, "{s}");
    let row =
        |s: &Value, name: &str| s["workloads"].as_array().unwrap().iter().find(|w| w["name"] == name).unwrap().clone();
    let members = row(&s, "trainer")["members"].clone();
    assert_eq!(members[0]["k8s.pod.name"], "trainer-0", "{s}");
    assert_eq!(members[0]["k8s.serviceaccount.name"], "trainer", "{s}");
    // The pod's own cgroup and its container's: `namespace` holds for both.
    assert_eq!(row(&s, "web")["cgroups"], 2, "web is identified as `web`: {s}");
    assert_eq!(row(&s, "web")["members"][0]["k8s.container.name"], "nginx", "{s}");
    let denied = netprobe(&web, "tcp", "127.0.0.2", port);
    assert!(denied.eperm(), "web has no rule for the store: {denied:?}");

    // Events name the pod as OpenTelemetry does.
    let events = agent.wait_events(2, |e| e["segment"] == "store" && e["workload"] != "(unidentified)");
    let ok = events.iter().find(|e| e["workload"] == "trainer").unwrap();
    assert_eq!((str_of(ok, "k8s.namespace.name"), str_of(ok, "k8s.pod.name")), ("ml-training", "trainer-0"), "{ok}");
    assert_eq!((str_of(ok, "k8s.container.name"), str_of(ok, "k8s.pod.uid")), ("main", pods["trainer-0"].0.as_str()));
    assert_eq!(str_of(ok, "container.image.name"), "nvcr.io/nvidia/pytorch:24.05-py3");
    assert_eq!(str_of(ok, "container.id"), pods["trainer-0"].1);
    let no = events.iter().find(|e| e["workload"] == "web").unwrap();
    assert_eq!((str_of(no, "k8s.pod.name"), str_of(no, "verdict")), ("web-0", "denied"), "{no}");
    assert_eq!(str_of(no, "container.image.name"), "docker.io/library/nginx:1.27");

    // A label change arrives on the watch: enforcement switches, no restart.
    let mut frames = recording("watch-relabel.jsonl").lines().map(str::to_string).collect::<Vec<_>>().into_iter();
    api.push_frame(frames.next().unwrap());
    agent.eventually("the relabelled pod loses the grant", || !allowed(&trainer));
    api.push_frame(frames.next().unwrap());
    agent.eventually("the pod labelled back regains it", || allowed(&trainer));

    // 410 Gone: the watcher relists; trainer-0 was deleted meanwhile.
    api.queue_list(recording("list-after-expired.json"));
    api.push_frame(recording("watch-expired.jsonl").trim());
    agent.eventually("the relist drops the deleted pod", || {
        agent.status()["identity"]["kubernetes"]["relists"].as_u64() >= Some(2)
    });
    let p = netprobe(&trainer, "tcp", "127.0.0.2", port);
    assert!(p.eperm(), "a pod the API no longer lists is unidentified again: {p:?}");
    let s = agent.status();
    assert_eq!(s["identity"]["kubernetes"]["objects"], 1, "{s}");
    assert_eq!(row(&s, "web")["cgroups"], 2, "{s}");

    // Only this node's pods were asked for, and watches resumed from the list.
    let requests = api.requests();
    assert!(requests.iter().all(|r| r.contains("fieldSelector=spec.nodeName%3Dtest-node")), "{requests:?}");
    assert!(requests.iter().any(|r| r.contains("watch=true") && r.contains("resourceVersion=1000")), "{requests:?}");
    assert!(requests.iter().any(|r| r.contains("watch=true") && r.contains("resourceVersion=2107")), "{requests:?}");
}

#[test]
fn pod_identities_carry_over_a_restart_until_the_api_answers() {
    let Setup { _rt, api, server, initial, tree, trainer, web, port, .. } = Setup::new("k8s-carry");
    let yaml = format!(
        r#"
version: 1
agent:
  kubernetes:
    apiServer: {url}
{segments}workloads:
  - name: trainer
    selector:
      namespace: ml-training
      podLabels:
        matchLabels: {{app: trainer}}
  - name: web
    selector:
      namespace: default
allow:
  - workload: trainer
    segment: store
"#,
        url = server.url,
        segments = store_segment(port)
    );
    let allowed = |cg: &std::path::Path| netprobe(cg, "tcp", "127.0.0.2", port).ok();
    let cgroups_of = |s: &Value, name: &str| workload(s, name)["cgroups"].as_u64().unwrap();

    let mut agent = Agent::start(&tree, &yaml);
    api.queue_list(initial.clone());
    agent.eventually("the trainer pod is identified", || allowed(&trainer));
    let before = agent.status();
    let identified = cgroups_of(&before, "trainer") + cgroups_of(&before, "web");
    assert!(cgroups_of(&before, "trainer") >= 2, "the pod's cgroup and its container's: {before}");
    agent.kill9();
    assert!(allowed(&trainer), "the pinned programs keep enforcing while no agent runs");

    // The API does not answer the next agent. The same policy file: the
    // identities it finds pinned hold until the pods are listed.
    let mut agent = Agent::start(&tree, &yaml);
    let s = agent.status();
    assert_ne!(s["identity"]["kubernetes"]["state"], "synced", "{s}");
    assert_eq!(s["identity"]["carried_over"].as_u64(), Some(identified), "{s}");
    assert_eq!(cgroups_of(&s, "trainer"), cgroups_of(&before, "trainer"), "{s}");
    assert!(allowed(&trainer), "a pod the earlier agent identified is not failed closed by a restart");
    let p = netprobe(&web, "tcp", "127.0.0.2", port);
    assert!(p.eperm(), "carried identities keep their rules: web has none for the store: {p:?}");
    // A reload of the same file keeps them: the ids still name the same workloads.
    let out = std::process::Command::new(WARDEN).args(["reload", "--socket"]).arg(&agent.socket).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(agent.status()["identity"]["carried_over"].as_u64(), Some(identified));
    assert!(allowed(&trainer), "still carried after a reload of the same file");

    // Once the API lists the pods, metadata decides again.
    api.queue_list(initial.clone());
    agent.eventually("the pod list settles every carried identity", || agent.status()["identity"]["carried_over"] == 0);
    assert!(allowed(&trainer), "listed with the same labels: still trainer");
    assert_eq!(agent.status()["identity"]["kubernetes"]["state"], "synced");

    // Another policy file may number workloads differently: nothing is
    // carried, and metadata-selected pods wait for the API (fail closed).
    agent.kill9();
    let agent = Agent::start(&tree, &format!("{yaml}# edited\n"));
    assert_eq!(agent.status()["identity"]["carried_over"], 0);
    let p = netprobe(&trainer, "tcp", "127.0.0.2", port);
    assert!(p.eperm(), "no metadata yet under another policy file: fail closed: {p:?}");
    api.queue_list(initial);
    agent.eventually("the listed pod is identified again", || allowed(&trainer));
}

/// `helm uninstall` deletes the DaemonSet, then its pods get SIGTERM: the
/// agent removes enforcement from the node. A restart, an upgrade or a
/// drain (the DaemonSet still there) and an API that does not answer keep
/// it pinned for the next agent.
#[test]
fn an_uninstall_removes_enforcement_a_restart_or_no_answer_keeps_it() {
    const DS: &str = "/apis/apps/v1/namespaces/warden-system/daemonsets/warden";
    let ds = |deleting: bool| {
        let deletion = if deleting { r#","deletionTimestamp":"2026-12-06T10:00:00Z""# } else { "" };
        format!(
            r#"{{"apiVersion":"apps/v1","kind":"DaemonSet","metadata":{{"name":"warden","namespace":"warden-system","uid":"6f1c1d1e-0000-4000-8000-000000000001"{deletion}}}}}"#
        )
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let api = warden_testkit::kube_api::FakeApiServer::new();
    let server = rt.block_on(api.serve()).unwrap();
    let tree = TestTree::new("k8s-owner");
    let job = tree.mkdir("job");
    let port = tcp_listener("127.0.0.2");
    // No workload matches `job`: unidentified, so the segment is closed to it.
    let yaml = |url: &str| {
        format!(
            "version: 1\nagent:\n  kubernetes:\n    apiServer: {url}\n{}workloads:\n  - name: trainer\n    selector:\n      namespace: ml\nallow:\n  - workload: trainer\n    segment: store\n",
            store_segment(port)
        )
    };
    let env = [("WARDEN_REMOVE_ON_DELETE", "warden-system/warden")];
    let links = |dir: &std::path::Path| std::fs::read_dir(dir.join("links")).map(|d| d.count()).unwrap_or(0);
    let run = |url: &str| -> (std::path::PathBuf, String) {
        let mut agent = Agent::start_with_env(&tree, &yaml(url), &env);
        let dir = std::path::PathBuf::from(str_of(&agent.status()["pins"], "dir"));
        let p = netprobe(&job, "tcp", "127.0.0.2", port);
        assert!(p.eperm(), "unidentified: denied while the agent runs: {p:?}");
        assert!(links(&dir) > 0, "links pinned in {}", dir.display());
        agent.stop();
        (dir, agent.log())
    };

    // A restart: the DaemonSet is still there.
    api.set_object(DS, Some(ds(false)));
    let (dir, log) = run(&server.url);
    assert!(links(&dir) > 0, "a restart keeps the pins:\n{log}");
    assert!(netprobe(&job, "tcp", "127.0.0.2", port).eperm(), "and the pinned programs keep enforcing");
    assert!(log.contains("the DaemonSet is still there"), "{log}");

    // No answer (nothing listens there): kept, and the log says how to remove it.
    let closed = format!("http://127.0.0.1:{}", tcp_port_closed());
    let (dir, log) = run(&closed);
    assert!(links(&dir) > 0, "no answer keeps the pins:\n{log}");
    assert!(log.contains("cannot tell an uninstall from a restart") && log.contains("warden uninstall"), "{log}");

    // Being deleted (foreground deletion), then gone (404): both remove it.
    for body in [Some(ds(true)), None] {
        let gone = body.is_none();
        api.set_object(DS, body);
        let (dir, log) = run(&server.url);
        assert_eq!(links(&dir), 0, "uninstalled (gone: {gone}): no link left:\n{log}");
        let p = netprobe(&job, "tcp", "127.0.0.2", port);
        assert!(p.ok(), "nothing enforces any more (gone: {gone}): {p:?}\n{log}");
        assert!(log.contains("enforcement removed"), "{log}");
    }
    assert!(api.requests().iter().any(|r| r.starts_with(DS)), "{:?}", api.requests());
}

/// A loopback port nothing listens on (bound, then closed).
fn tcp_port_closed() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}
