//! The monitoring assets in `manifests/monitoring/`: the PrometheusRule of alerts and the
//! Grafana dashboard are well formed (the fields Prometheus Operator and Grafana read, with the
//! values they accept), every query in them parses as PromQL, and every metric a query names
//! is one the gateway exports (read from its own registry) or one vLLM exports.

use std::collections::BTreeSet;

use promql_parser::parser::{self, Expr};
use serde_json::Value;

use crate::support::repo;
use twin_operator::serve::metrics::{GatewayMetrics, RequestLabels, RouteLabels};

/// vLLM's metrics the assets use, as its OpenAI server exports them (the "Production Metrics"
/// page of vLLM's documentation; each is there from v0.5 to v0.11, the chart's default image;
/// `vllm:lora_requests_info`, a gauge labelled with the running and waiting adapters, is in the
/// "LoRA Metrics" of vLLM's metrics design notes).
const VLLM_METRICS: [&str; 7] = [
    "vllm:lora_requests_info",
    "vllm:num_requests_running",
    "vllm:num_requests_waiting",
    "vllm:time_to_first_token_seconds_bucket",
    "vllm:generation_tokens_total",
    "vllm:prompt_tokens_total",
    "vllm:request_success_total",
];

/// Every series name the gateway exports: its registry's families with the suffixes of their
/// types in the exposition (`_total` of counters; `_bucket`, `_sum` and `_count` of histograms).
fn gateway_series() -> BTreeSet<String> {
    let metrics = GatewayMetrics::default();
    // A labelled family is exported once it has a label set: give each one.
    let route = "/v1/chat/completions".to_string();
    metrics.requests.get_or_create(&RequestLabels { route: route.clone(), status: 200 }).inc();
    metrics.duration.get_or_create(&RouteLabels { route }).observe(0.1);
    metrics.error("upstream_timeout");
    let text = metrics.encode();
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(declared) = line.strip_prefix("# TYPE ") else { continue };
        let (name, kind) = declared.split_once(' ').unwrap();
        match kind {
            "counter" => {
                names.insert(format!("{name}_total"));
            }
            "histogram" => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
            _ => {
                names.insert(name.to_string());
            }
        }
    }
    assert!(
        names.contains("twin_gateway_requests_total") && names.contains("twin_gateway_ready"),
        "{names:?}"
    );
    names
}

/// The metric names an expression selects.
fn metric_names(expr: &Expr, out: &mut Vec<String>) {
    match expr {
        Expr::Aggregate(e) => {
            metric_names(&e.expr, out);
            if let Some(param) = &e.param {
                metric_names(param, out);
            }
        }
        Expr::Unary(e) => metric_names(&e.expr, out),
        Expr::Binary(e) => {
            metric_names(&e.lhs, out);
            metric_names(&e.rhs, out);
        }
        Expr::Paren(e) => metric_names(&e.expr, out),
        Expr::Subquery(e) => metric_names(&e.expr, out),
        Expr::VectorSelector(selector) => out.extend(selector.name.clone()),
        Expr::MatrixSelector(matrix) => out.extend(matrix.vs.name.clone()),
        Expr::Call(call) => call.args.args.iter().for_each(|arg| metric_names(arg, out)),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

/// Parses `query` (`where` names it) and checks each metric it selects exists.
fn check_query(query: &str, known: &BTreeSet<String>, at: &str) -> Vec<String> {
    let expr = parser::parse(query).unwrap_or_else(|e| panic!("{at}: {query:?} is not PromQL: {e}"));
    let mut names = Vec::new();
    metric_names(&expr, &mut names);
    assert!(!names.is_empty(), "{at}: {query:?} selects no metric");
    for name in &names {
        assert!(
            known.contains(name) || VLLM_METRICS.contains(&name.as_str()),
            "{at}: {name} is exported by neither the gateway nor vLLM"
        );
    }
    names
}

#[test]
fn the_alert_rules_are_a_valid_prometheus_rule_over_metrics_that_exist() {
    let known = gateway_series();
    let rule: Value = serde_saphyr::from_str(&repo::read("manifests/monitoring/twin-alerts.yaml")).unwrap();
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(rule["kind"], "PrometheusRule");
    assert!(rule["metadata"]["name"].as_str().is_some_and(|n| !n.is_empty()));
    let duration = regex_lite::Regex::new(r"^(([0-9]+)(y|w|d|h|m|s|ms))+$").unwrap();
    let mut groups = BTreeSet::new();
    let mut alerts = BTreeSet::new();
    let mut used = BTreeSet::new();
    for group in rule["spec"]["groups"].as_array().unwrap() {
        assert!(groups.insert(group["name"].as_str().unwrap().to_string()), "group names are unique");
        for alert in group["rules"].as_array().unwrap() {
            let name = alert["alert"].as_str().expect("each rule is an alert with a name");
            assert!(alerts.insert(name.to_string()), "{name} is defined once");
            if let Some(wait) = alert.get("for") {
                assert!(duration.is_match(wait.as_str().unwrap()), "{name}: for {wait}");
            }
            let severity = alert["labels"]["severity"].as_str().unwrap();
            assert!(["warning", "critical"].contains(&severity), "{name}: severity {severity}");
            for text in ["summary", "description"] {
                assert!(alert["annotations"][text].as_str().is_some_and(|t| !t.is_empty()), "{name}: {text}");
            }
            used.extend(check_query(alert["expr"].as_str().unwrap(), &known, name));
        }
    }
    // What the issue asks to be alerted on: error rate, latency, an endpoint not ready,
    // prompt-log drops.
    for name in
        ["TwinGatewayErrorRate", "TwinGatewayLatencyHigh", "TwinEndpointNotReady", "TwinPromptLogDropping"]
    {
        assert!(alerts.contains(name), "{name} in {alerts:?}");
    }
    assert!(used.contains("twin_gateway_prompt_log_dropped_total") && used.contains("twin_gateway_ready"));
}

#[test]
fn the_dashboard_is_grafana_json_whose_queries_name_metrics_that_exist() {
    let known = gateway_series();
    let dashboard: Value =
        serde_json::from_str(&repo::read("manifests/monitoring/twin-dashboard.json")).unwrap();
    assert!(dashboard["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert_eq!(dashboard["uid"], "twin-endpoints");
    assert!(dashboard["schemaVersion"].as_u64().unwrap() >= 36);
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(variables, ["datasource", "namespace", "endpoint"]);
    let mut ids = BTreeSet::new();
    let mut used = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap();
        assert!(ids.insert(panel["id"].as_u64().unwrap()), "{title}: panel ids are unique");
        let grid = &panel["gridPos"];
        assert!(grid["w"].as_u64().unwrap() <= 24 && grid["h"].as_u64().unwrap() > 0, "{title}");
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        let mut refs = BTreeSet::new();
        for target in panel["targets"].as_array().unwrap() {
            assert!(refs.insert(target["refId"].as_str().unwrap()), "{title}: refIds are unique");
            // Grafana's variables, as Grafana substitutes them before Prometheus sees the query.
            let query = target["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "1m")
                .replace("$namespace", ".*")
                .replace("$endpoint", ".*");
            used.extend(check_query(&query, &known, title));
        }
    }
    // What the issue asks to see: requests, errors, latency percentiles, time to first token,
    // tokens per second, retrieval time, replicas.
    for metric in [
        "twin_gateway_requests_total",
        "twin_gateway_errors_total",
        "twin_gateway_request_duration_seconds_bucket",
        "twin_gateway_time_to_first_token_seconds_bucket",
        "vllm:generation_tokens_total",
        "twin_gateway_retrieval_seconds_bucket",
        "twin_gateway_ready",
    ] {
        assert!(used.contains(metric), "{metric} is charted");
    }
}
