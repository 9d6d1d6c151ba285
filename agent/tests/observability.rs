//! The chart's Prometheus rules and Grafana dashboard
//! (config/helm/warden/files) against the real agent: every metric a query
//! names is one the agent exports (scraped from its /metrics, with every
//! optional family switched on), every label a selector matches on is one
//! that metric has, the rules pass `promtool check rules` and behave as
//! meant on synthetic series (`promtool test rules`), and every runbook link
//! lands on a README heading.
mod harness;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
};

use harness::*;
use serde_json::Value;
use yaml_rust2::{Yaml, YamlLoader};

const CHART_FILES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/helm/warden/files");
const README: &str = include_str!("../../README.md");

/// Labels Prometheus puts on every series of a target (job, instance) or
/// that Kubernetes service discovery adds; the agent never exports them.
const TARGET_LABELS: &[&str] = &["job", "instance", "namespace", "pod", "container", "service", "endpoint"];

/// Families the agent exports: name → label names seen on its samples.
type Exported = BTreeMap<String, BTreeSet<String>>;

fn read(name: &str) -> String {
    let path = Path::new(CHART_FILES).join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The families of a Prometheus text exposition: sample names mapped to
/// their family (`_count`/`_sum`/`_bucket` of summaries and histograms).
fn exported(text: &str) -> Exported {
    let mut kinds: BTreeMap<String, String> = BTreeMap::new();
    let mut out = Exported::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            kinds.insert(name.into(), kind.into());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let end = line.find(['{', ' ']).unwrap();
        let mut name = &line[..end];
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = name.strip_suffix(suffix)
                && kinds.get(base).is_some_and(|k| k == "histogram" || k == "summary")
            {
                name = base;
            }
        }
        let labels = out.entry(name.into()).or_default();
        if line[end..].starts_with('{') {
            let body = &line[end + 1..line.rfind('}').unwrap()];
            for pair in split_matchers(body) {
                labels.insert(pair.split('=').next().unwrap().trim().into());
            }
        }
    }
    out
}

/// Splits `a="x,y",b=~"z"` at the commas outside quotes.
fn split_matchers(body: &str) -> Vec<String> {
    let (mut out, mut cur, mut quoted, mut escaped) = (Vec::new(), String::new(), false, false);
    for c in body.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if !cur.trim().is_empty() {
        out.push(cur);
    }
    out
}

/// Every metric a PromQL expression names (warden's own and the process
/// collector's), with the label names its selectors match on.
fn metrics_in(expr: &str) -> Vec<(String, Vec<String>)> {
    let bytes = expr.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if !ident(bytes[i]) || (i > 0 && ident(bytes[i - 1])) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && ident(bytes[i]) {
            i += 1;
        }
        let name = &expr[start..i];
        if !(name.starts_with("warden_") || name.starts_with("process_")) {
            continue;
        }
        let mut labels = Vec::new();
        if bytes.get(i) == Some(&b'{') {
            let close = i + expr[i..].find('}').expect("unclosed selector");
            for m in split_matchers(&expr[i + 1..close]) {
                let label = m.split(['=', '!']).next().unwrap().trim().to_string();
                labels.push(label);
            }
            i = close;
        }
        out.push((name.to_string(), labels));
    }
    out
}

/// Checks one query: every metric exported, every matched label present.
fn check_query(expr: &str, exported: &Exported, problems: &mut Vec<String>) -> usize {
    let found = metrics_in(expr);
    for (name, labels) in &found {
        let name = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|b| exported.contains_key(*b)))
            .unwrap_or(name);
        let Some(have) = exported.get(name) else {
            problems.push(format!("`{name}` is not exported by the agent (in `{expr}`)"));
            continue;
        };
        for l in labels.iter().filter(|l| !TARGET_LABELS.contains(&l.as_str())) {
            if !have.contains(l) {
                problems.push(format!("`{name}` has no label `{l}` (it has {have:?}; in `{expr}`)"));
            }
        }
    }
    found.len()
}

/// The rules file as promtool reads a rules file: `groups:` + its body.
fn rules() -> Vec<Yaml> {
    let docs = YamlLoader::load_from_str(&read("prometheus-rules.yaml")).expect("rules file is YAML");
    assert_eq!(docs.len(), 1, "one document");
    docs[0].as_vec().expect("the body of spec.groups: a list of groups").clone()
}

fn each_rule(f: &mut impl FnMut(&Yaml)) {
    for g in rules() {
        for r in g["rules"].as_vec().expect("rules: a list") {
            f(r);
        }
    }
}

/// Every `expr` (and templating query) of the dashboard, with its title.
fn dashboard_queries() -> Vec<(String, String)> {
    let d: Value = serde_json::from_str(&read("grafana-dashboard.json")).expect("dashboard is JSON");
    let mut out = Vec::new();
    fn panels(list: &[Value], out: &mut Vec<(String, String)>) {
        for p in list {
            let title = p["title"].as_str().unwrap_or_default().to_string();
            for t in p["targets"].as_array().into_iter().flatten() {
                out.push((title.clone(), t["expr"].as_str().expect("every target has an expr").to_string()));
            }
            panels(p["panels"].as_array().map_or(&[], |v| v), out);
        }
    }
    panels(d["panels"].as_array().expect("panels"), &mut out);
    for v in d["templating"]["list"].as_array().unwrap() {
        let q = &v["query"];
        if let Some(q) = q["query"].as_str().or(q.as_str()).filter(|_| v["type"] == "query") {
            out.push((format!("variable {}", v["name"]), q.to_string()));
        }
    }
    out
}

/// An agent with every optional family on: OTLP, a Kubernetes source and
/// `gpus: assigned` (their endpoints need not answer), and its /metrics.
fn scrape() -> String {
    let tree = TestTree::new("observe");
    let dir = TempDir::new("observe");
    let proc = dir.0.join("proc");
    std::fs::create_dir_all(&proc).unwrap();
    std::fs::write(proc.join("devices"), "Character devices:\n195 nvidia-frontend\n\nBlock devices:\n").unwrap();
    let dead = warden_testkit::rotel::free_port();
    let yaml = format!(
        "version: 1\nagent:\n  events: {{ otlp: {{ endpoint: \"http://127.0.0.1:{dead}\" }} }}\n  \
         kubernetes: {{ apiServer: \"http://127.0.0.1:{dead}\" }}\n  \
         devices: {{ procRoot: {proc}, kubeletSocket: {sock}, criSocket: {sock} }}\n\
         segments:\n  - name: store\n    network: [{{ cidr: 127.0.0.2/32 }}]\n  - name: gpus\n    devices: {{ gpus: all }}\n\
         workloads:\n  - name: pods\n    selector: {{ cgroup: \"pods/*\" }}\n\
         allow:\n  - workload: pods\n    segment: gpus\n    gpus: assigned\n",
        proc = proc.display(),
        sock = dir.0.join("absent.sock").display(),
    );
    let agent = Agent::start(&tree, &yaml);
    // The assignment read and the exporter report once they have tried.
    agent.eventually("the GPU assignment and OTLP families", || {
        let st = agent.status();
        st["gpu_assignment"].is_object() && st["events"]["otlp"].is_object()
    });
    let addr = agent.status()["metrics"].as_str().expect("metrics address in status").to_string();
    let (code, body) = http_get(&addr, "/metrics");
    assert_eq!(code, 200, "{body}");
    body
}

#[test]
fn every_rule_and_panel_queries_metrics_the_agent_exports() {
    let text = scrape();
    let exported = exported(&text);
    for family in ["warden_gpu_assignment_up", "warden_otlp_up", "warden_metadata_source_up"] {
        assert!(exported.contains_key(family), "the scrape lacks {family}: switch it on in `scrape`\n{text}");
    }
    let mut problems = Vec::new();
    let mut used = BTreeSet::new();
    let mut n = 0;
    each_rule(&mut |r| {
        let expr = r["expr"].as_str().expect("expr");
        n += check_query(expr, &exported, &mut problems);
        used.extend(metrics_in(expr).into_iter().map(|(m, _)| m));
    });
    assert!(n > 10, "the rules name metrics");
    let mut m = 0;
    for (title, expr) in dashboard_queries() {
        let before = problems.len();
        m += check_query(&expr, &exported, &mut problems);
        for p in &mut problems[before..] {
            *p = format!("dashboard panel {title:?}: {p}");
        }
        used.extend(metrics_in(&expr).into_iter().map(|(m, _)| m));
    }
    assert!(m > 40, "the dashboard names metrics");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    eprintln!("metrics used by the rules and dashboard: {used:?}");
}

#[test]
fn the_query_parser_finds_names_and_matched_labels() {
    let q = r#"sum by (kind) (rate(warden_decisions_total{job=~"$job", verdict="denied"}[5m])) / ignoring(x) warden_identity_delay_seconds_count + up{job="a,b"} + foo_warden_x"#;
    assert_eq!(
        metrics_in(q),
        [
            ("warden_decisions_total".to_string(), vec!["job".to_string(), "verdict".to_string()]),
            ("warden_identity_delay_seconds_count".to_string(), vec![]),
        ]
    );
    let e = exported(
        "# TYPE warden_identity_delay_seconds summary\nwarden_identity_delay_seconds{quantile=\"1\"} 2\nwarden_identity_delay_seconds_count 4\n",
    );
    assert_eq!(e.keys().collect::<Vec<_>>(), ["warden_identity_delay_seconds"]);
    let mut problems = Vec::new();
    check_query(
        "warden_identity_delay_seconds_count + warden_identity_delay_seconds{kind=\"x\"} + warden_nope",
        &e,
        &mut problems,
    );
    assert_eq!(problems.len(), 2, "{problems:?}");
}

#[test]
fn every_alert_has_severity_summary_description_and_a_runbook_in_the_readme() {
    let anchors: BTreeSet<String> = README.lines().filter(|l| l.starts_with('#')).map(slug).collect();
    let mut names = BTreeSet::new();
    each_rule(&mut |r| {
        let name = r["alert"].as_str().expect("only alerting rules").to_string();
        assert!(names.insert(name.clone()), "{name} twice");
        let sev = r["labels"]["severity"].as_str().unwrap_or_default();
        assert!(["critical", "warning", "info"].contains(&sev), "{name}: severity {sev:?}");
        for key in ["summary", "description", "runbook_url"] {
            assert!(r["annotations"][key].as_str().is_some_and(|s| !s.is_empty()), "{name}: no {key}");
        }
        let url = r["annotations"]["runbook_url"].as_str().unwrap();
        let anchor = url.split_once("README.md#").map(|(_, a)| a).unwrap_or_else(|| panic!("{name}: {url}"));
        assert!(anchors.contains(anchor), "{name}: README has no heading for #{anchor}");
    });
    for want in [
        "WardenNotEnforcing",
        "WardenDeniedEventsDropped",
        "WardenEventsDropped",
        "WardenTamperDetected",
        "WardenPolicyReloadFailed",
        "WardenPolicyHashesDiffer",
        "WardenMetadataSourceDown",
        "WardenSegmentRootsMissing",
        "WardenAgentDown",
        "WardenAgentsAbsent",
    ] {
        assert!(names.contains(want), "no alert {want}");
    }
}

/// A GitHub heading anchor: lower case, punctuation dropped, spaces → `-`.
fn slug(heading: &str) -> String {
    heading
        .trim_start_matches('#')
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn the_dashboard_takes_its_datasource_from_a_variable() {
    let d: Value = serde_json::from_str(&read("grafana-dashboard.json")).unwrap();
    let vars = d["templating"]["list"].as_array().unwrap();
    assert!(vars.iter().any(|v| v["type"] == "datasource" && v["query"] == "prometheus" && v["name"] == "datasource"));
    let mut ids = BTreeSet::new();
    for p in d["panels"].as_array().unwrap() {
        assert!(ids.insert(p["id"].as_u64().unwrap()), "panel ids are unique");
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        for t in p["targets"].as_array().unwrap() {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        }
    }
    for want in [
        "Decisions by kind and verdict",
        "Denies by workload",
        "Event throughput",
        "Events dropped",
        "Enforcement state per node",
        "Verified and tamper events",
        "Reload outcomes",
        "Last reload duration",
        "Metadata sources",
    ] {
        assert!(d["panels"].as_array().unwrap().iter().any(|p| p["title"] == want), "no panel {want:?}");
    }
}

/// promtool from Debian's prometheus package (scripts/setup.sh unpacks it
/// into target/tools), or `WARDEN_PROMTOOL`. Missing fails: never skipped.
fn promtool() -> PathBuf {
    let path = std::env::var_os("WARDEN_PROMTOOL")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tools/prometheus/usr/bin/promtool"));
    assert!(path.is_file(), "promtool not found at {}: run scripts/setup.sh or set WARDEN_PROMTOOL", path.display());
    path
}

fn promtool_run(args: &[&str], dir: &Path) -> String {
    let out = Command::new(promtool()).args(args).current_dir(dir).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

/// Synthetic series and the alerts they must (and must not) raise.
const ALERT_TESTS: &str = r#"rule_files: [rules.yaml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'warden_enforcement{job="warden",instance="n1",kind="files",state="unverified",backend="fanotify"}'
        values: '1x10'
      - series: 'warden_enforcement{job="warden",instance="n2",kind="files",state="enforced",backend="lsm"}'
        values: '1x10'
      - series: 'warden_enforcement{job="warden",instance="n2",kind="network",state="audit",backend="cgroup sock_addr"}'
        values: '1x10'
      - series: 'warden_policy_info{job="warden",instance="n1",file="/etc/warden/warden.yaml",sha256="aa"}'
        values: '1x30'
      - series: 'warden_policy_info{job="warden",instance="n2",file="/etc/warden/warden.yaml",sha256="bb"}'
        values: '1x30'
      - series: 'warden_policy_info{job="other-warden",instance="n3",file="/etc/warden/warden.yaml",sha256="cc"}'
        values: '1x30'
      - series: 'warden_policy_last_reload_successful{job="warden",instance="n1"}'
        values: '1 1 0x10'
      - series: 'warden_events_kernel_dropped_total{job="warden",instance="n1",class="denied"}'
        values: '0 0 0 5 5 5'
      - series: 'warden_events_kernel_dropped_total{job="warden",instance="n1",class="allowed"}'
        values: '0x5'
      - series: 'warden_tamper_events_total{job="warden",instance="n2"}'
        values: '0 0 1 1'
      - series: 'up{job="warden",instance="n1"}'
        values: '1 1 0x10'
    alert_rule_test:
      - eval_time: 5m
        alertname: WardenNotEnforcing
        exp_alerts:
          - exp_labels: {severity: critical, job: warden, instance: n1, kind: files, state: unverified}
      - eval_time: 5m
        alertname: WardenDeniedEventsDropped
        exp_alerts:
          - exp_labels: {severity: warning, job: warden, instance: n1}
      - eval_time: 3m
        alertname: WardenTamperDetected
        exp_alerts:
          - exp_labels: {severity: critical, job: warden, instance: n2}
      - eval_time: 9m
        alertname: WardenPolicyReloadFailed
        exp_alerts:
          - exp_labels: {severity: warning, job: warden, instance: n1}
      - eval_time: 20m
        alertname: WardenPolicyHashesDiffer
        exp_alerts:
          - exp_labels: {severity: warning, job: warden}
      - eval_time: 9m
        alertname: WardenAgentDown
        exp_alerts:
          - exp_labels: {severity: critical, job: warden, instance: n1}
      - eval_time: 5m
        alertname: WardenEventsDropped
        exp_alerts: []
  - interval: 1m
    input_series:
      - series: 'warden_build_info{job="unrelated"}'
        values: '1x30'
    alert_rule_test:
      - eval_time: 20m
        alertname: WardenAgentsAbsent
        exp_alerts:
          - exp_labels: {severity: critical}
"#;

#[test]
fn promtool_checks_the_rules_and_their_behaviour() {
    let dir = TempDir::new("promtool");
    // The file is the body of `spec.groups`: indented under `groups:` it is
    // a rules file.
    let body: String = read("prometheus-rules.yaml").lines().map(|l| format!("  {l}\n")).collect();
    std::fs::write(dir.0.join("rules.yaml"), format!("groups:\n{body}")).unwrap();
    let text = promtool_run(&["check", "rules", "rules.yaml"], &dir.0);
    assert!(text.contains("SUCCESS"), "{text}");
    // The behaviour tests compare labels; promtool would compare the
    // annotations' text too, which `check rules` has already parsed.
    let mut groups = rules();
    for g in &mut groups {
        if let Yaml::Hash(g) = g
            && let Some(Yaml::Array(rules)) = g.get_mut(&Yaml::String("rules".into()))
        {
            for r in rules.iter_mut() {
                if let Yaml::Hash(r) = r {
                    r.remove(&Yaml::String("annotations".into()));
                }
            }
        }
    }
    let mut doc = yaml_rust2::yaml::Hash::new();
    doc.insert(Yaml::String("groups".into()), Yaml::Array(groups));
    let mut text = String::new();
    yaml_rust2::YamlEmitter::new(&mut text).dump(&Yaml::Hash(doc)).unwrap();
    std::fs::write(dir.0.join("bare.yaml"), text).unwrap();
    std::fs::write(
        dir.0.join("tests.yaml"),
        ALERT_TESTS.replace("rule_files: [rules.yaml]", "rule_files: [bare.yaml]"),
    )
    .unwrap();
    promtool_run(&["test", "rules", "tests.yaml"], &dir.0);
}
