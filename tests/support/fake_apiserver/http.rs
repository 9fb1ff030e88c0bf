//! The HTTP face of the fake API server: Kubernetes URL routing, the verbs, watch streams,
//! discovery for kubectl, server-side Tables for `kubectl get`, and fault injection.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use super::fields::Scope;
use super::patch;
use super::selector::LabelSelector;
use super::store::{ApiError, ObjectKey, Ownership, field_selector_matches};
use super::{Shared, Verb};

/// A parsed resource URL.
#[derive(Debug)]
struct Route {
    type_index: usize,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

fn json_response(code: u16, body: &Value) -> Response {
    (StatusCode::from_u16(code).unwrap(), [(header::CONTENT_TYPE, "application/json")], body.to_string())
        .into_response()
}

fn error_response(error: &ApiError, plural: &str, name: Option<&str>) -> Response {
    let mut details = json!({"kind": plural});
    if let Some(name) = name {
        details["name"] = json!(name);
    }
    if let ApiError::Invalid { causes, .. } = error {
        details["causes"] = causes
            .iter()
            .map(|c| {
                let (field, message) = c.split_once(": ").unwrap_or(("", c));
                json!({"reason": "FieldValueInvalid", "field": field, "message": message})
            })
            .collect();
    }
    json_response(
        error.code(),
        &json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": error.message(), "reason": error.reason(), "details": details, "code": error.code(),
        }),
    )
}

/// Entry point of every request.
pub async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let delay = *shared.delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let query: HashMap<String, String> =
        form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()).into_owned().collect();
    let path = uri.path().trim_end_matches('/');
    if let Some(response) = discovery(&shared, path) {
        return response;
    }
    let route = match route(&shared, path) {
        Some(route) => route,
        None => {
            return error_response(
                &ApiError::NotFound(format!("the server could not find the requested resource ({path})")),
                "",
                None,
            );
        }
    };
    let watch = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    let verb = match (&method, route.name.is_some()) {
        (&Method::GET, _) if watch => Verb::Watch,
        (&Method::GET, true) => Verb::Get,
        (&Method::GET, false) => Verb::List,
        (&Method::POST, false) => Verb::Create,
        (&Method::PUT, true) => Verb::Update,
        (&Method::PATCH, true) => Verb::Patch,
        (&Method::DELETE, true) => Verb::Delete,
        (&Method::DELETE, false) => Verb::DeleteCollection,
        _ => {
            return error_response(
                &ApiError::MethodNotAllowed(format!("{method} is not allowed on {path}")),
                "",
                None,
            );
        }
    };
    let plural = shared.store.lock().unwrap().types[route.type_index].plural.clone();
    shared.record(
        verb,
        &plural,
        route.namespace.as_deref(),
        route.name.as_deref(),
        route.subresource.as_deref(),
    );
    if let Some((code, message)) = shared.take_fault(verb, &plural, route.subresource.as_deref()) {
        return error_response(&ApiError::Injected { code, message }, &plural, route.name.as_deref());
    }
    let wants_table =
        headers.get(header::ACCEPT).and_then(|a| a.to_str().ok()).is_some_and(|a| a.contains("as=Table"));
    let result = match verb {
        Verb::Watch => return watch_response(shared, route, &query),
        Verb::Get => get(&shared, &route, wants_table),
        Verb::List => list(&shared, &route, &query, wants_table),
        Verb::Create => create(&shared, &route, &query, &body),
        Verb::Update => update(&shared, &route, &query, &body),
        Verb::Patch => patch_object(&shared, &route, &query, &headers, &body),
        Verb::Delete => delete(&shared, &route),
        Verb::DeleteCollection => delete_collection(&shared, &route, &query),
    };
    match result {
        Ok((code, value)) => json_response(code, &value),
        Err(error) => error_response(&error, &plural, route.name.as_deref()),
    }
}

fn route(shared: &Shared, path: &str) -> Option<Route> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let store = shared.store.lock().unwrap();
    let (namespace, rest) = match rest {
        ["namespaces", ns, plural, tail @ ..]
            if store.type_index(group, version, plural).is_some_and(|i| store.types[i].namespaced) =>
        {
            (Some(ns.to_string()), [&[*plural][..], tail].concat())
        }
        _ => (None, rest.to_vec()),
    };
    let (plural, name, subresource) = match rest.as_slice() {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(name.to_string()), None),
        [plural, name, sub] => (*plural, Some(name.to_string()), Some(sub.to_string())),
        _ => return None,
    };
    let type_index = store.type_index(group, version, plural)?;
    Some(Route { type_index, namespace, name, subresource })
}

fn key(shared: &Shared, route: &Route) -> Result<ObjectKey, ApiError> {
    let store = shared.store.lock().unwrap();
    let resource = &store.types[route.type_index];
    let namespace = match (&route.namespace, resource.namespaced) {
        (Some(ns), true) => ns.clone(),
        (None, false) => String::new(),
        (None, true) => {
            return Err(ApiError::NotFound(format!(
                "{} is namespaced: use /namespaces/NS/{}",
                resource.plural, resource.plural
            )));
        }
        (Some(_), false) => return Err(ApiError::NotFound(format!("{} is cluster-scoped", resource.plural))),
    };
    Ok(ObjectKey { type_index: route.type_index, namespace, name: route.name.clone().unwrap_or_default() })
}

fn scope(shared: &Shared, route: &Route) -> Result<Scope, ApiError> {
    let store = shared.store.lock().unwrap();
    let resource = &store.types[route.type_index];
    match route.subresource.as_deref() {
        None => Ok(Scope::Main { status_is_subresource: resource.status_subresource }),
        Some("status") if resource.status_subresource => Ok(Scope::Status),
        Some(other) => Err(ApiError::NotFound(format!("{} has no subresource {other:?}", resource.plural))),
    }
}

fn parse_body(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .or_else(|_| serde_saphyr::from_slice(body))
        .map_err(|e| ApiError::BadRequest(format!("the request body is not JSON or YAML: {e}")))
}

fn get(shared: &Shared, route: &Route, table: bool) -> Result<(u16, Value), ApiError> {
    let key = key(shared, route)?;
    scope(shared, route)?;
    let store = shared.store.lock().unwrap();
    let object = store.get(&key)?;
    let resource = &store.types[route.type_index];
    Ok((
        200,
        if table { super::table::render(resource, &[object], store.resource_version()) } else { object },
    ))
}

fn list(
    shared: &Shared,
    route: &Route,
    query: &HashMap<String, String>,
    table: bool,
) -> Result<(u16, Value), ApiError> {
    let selector = LabelSelector::parse(query.get("labelSelector").map(String::as_str).unwrap_or_default())
        .map_err(ApiError::BadRequest)?;
    let store = shared.store.lock().unwrap();
    let resource = &store.types[route.type_index];
    let items = store.list(
        route.type_index,
        route.namespace.as_deref(),
        &selector,
        query.get("fieldSelector").map(String::as_str).unwrap_or_default(),
    );
    if table {
        return Ok((200, super::table::render(resource, &items, store.resource_version())));
    }
    Ok((
        200,
        json!({
            "apiVersion": resource.api_version(), "kind": format!("{}List", resource.kind),
            "metadata": {"resourceVersion": store.resource_version().to_string()}, "items": items,
        }),
    ))
}

fn manager(query: &HashMap<String, String>) -> String {
    query.get("fieldManager").cloned().unwrap_or_else(|| "unknown".into())
}

fn create(
    shared: &Shared,
    route: &Route,
    query: &HashMap<String, String>,
    body: &Bytes,
) -> Result<(u16, Value), ApiError> {
    let object = parse_body(body)?;
    let namespace = route.namespace.clone().unwrap_or_default();
    let mut store = shared.store.lock().unwrap();
    if store.types[route.type_index].namespaced && route.namespace.is_none() {
        return Err(ApiError::BadRequest("create a namespaced object under /namespaces/NS/".into()));
    }
    if query.get("dryRun").is_some() {
        return Ok((201, object));
    }
    store.create(route.type_index, &namespace, object, &manager(query), "Update").map(|o| (201, o))
}

fn update(
    shared: &Shared,
    route: &Route,
    query: &HashMap<String, String>,
    body: &Bytes,
) -> Result<(u16, Value), ApiError> {
    let key = key(shared, route)?;
    let scope = scope(shared, route)?;
    let object = parse_body(body)?;
    let manager = manager(query);
    shared.store.lock().unwrap().write(&key, object, scope, Ownership::Update(&manager)).map(|o| (200, o))
}

fn patch_object(
    shared: &Shared,
    route: &Route,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(u16, Value), ApiError> {
    let key = key(shared, route)?;
    let scope = scope(shared, route)?;
    let content_type =
        headers.get(header::CONTENT_TYPE).and_then(|c| c.to_str().ok()).unwrap_or_default().to_string();
    let patch_body = parse_body(body)?;
    let manager = manager(query);
    let mut store = shared.store.lock().unwrap();
    if content_type.starts_with("application/apply-patch") {
        let force = matches!(query.get("force").map(String::as_str), Some("true" | "1"));
        return patch::apply(
            &mut store,
            &key,
            patch_body,
            scope,
            query.get("fieldManager").map(String::as_str).unwrap_or_default(),
            force,
        )
        .map(|o| (200, o));
    }
    let mut object = store.get(&key)?;
    // The stored resource version only guards the write when the patch itself names one.
    object["metadata"].as_object_mut().unwrap().remove("resourceVersion");
    match content_type.split(';').next().unwrap_or_default() {
        "application/merge-patch+json" => patch::merge_patch(&mut object, &patch_body),
        "application/json-patch+json" => patch::json_patch(&mut object, &patch_body)?,
        "application/strategic-merge-patch+json" => {
            let resource = store.types[key.type_index].clone();
            patch::strategic_merge_patch(&resource, &mut object, &patch_body, &mut Vec::new())
        }
        other => return Err(ApiError::BadRequest(format!("unsupported patch content type {other:?}"))),
    }
    store.write(&key, object, scope, Ownership::Update(&manager)).map(|o| (200, o))
}

fn delete(shared: &Shared, route: &Route) -> Result<(u16, Value), ApiError> {
    let key = key(shared, route)?;
    shared.store.lock().unwrap().delete(&key).map(|o| (200, o))
}

fn delete_collection(
    shared: &Shared,
    route: &Route,
    query: &HashMap<String, String>,
) -> Result<(u16, Value), ApiError> {
    let selector = LabelSelector::parse(query.get("labelSelector").map(String::as_str).unwrap_or_default())
        .map_err(ApiError::BadRequest)?;
    let mut store = shared.store.lock().unwrap();
    let items = store.list(
        route.type_index,
        route.namespace.as_deref(),
        &selector,
        query.get("fieldSelector").map(String::as_str).unwrap_or_default(),
    );
    let mut deleted = Vec::new();
    for item in items {
        let key = ObjectKey {
            type_index: route.type_index,
            namespace: item["metadata"]["namespace"].as_str().unwrap_or_default().into(),
            name: item["metadata"]["name"].as_str().unwrap_or_default().into(),
        };
        deleted.push(store.delete(&key)?);
    }
    let resource = &store.types[route.type_index];
    Ok((
        200,
        json!({"apiVersion": resource.api_version(), "kind": format!("{}List", resource.kind), "metadata": {}, "items": deleted}),
    ))
}

fn watch_response(shared: Arc<Shared>, route: Route, query: &HashMap<String, String>) -> Response {
    let selector =
        match LabelSelector::parse(query.get("labelSelector").map(String::as_str).unwrap_or_default()) {
            Ok(selector) => selector,
            Err(e) => return error_response(&ApiError::BadRequest(e), "", None),
        };
    let fields = query.get("fieldSelector").cloned().unwrap_or_default();
    let from = query
        .get("resourceVersion")
        .filter(|v| !v.is_empty() && *v != "0")
        .and_then(|v| v.parse::<u64>().ok());
    let timeout = query.get("timeoutSeconds").and_then(|t| t.parse::<u64>().ok()).unwrap_or(1800);
    let (backlog, mut receiver) = match shared.store.lock().unwrap().subscribe(route.type_index, from) {
        Ok(subscription) => subscription,
        Err(error) => return error_response(&error, "", None),
    };
    let mut closed = shared.close_watches.subscribe();
    let (sender, receiver_body) = tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(256);
    let namespace = route.namespace.clone();
    let matches = move |event: &super::store::WatchEvent| {
        namespace.as_ref().is_none_or(|ns| &event.key.namespace == ns)
            && selector.matches_object(&event.object)
            && field_selector_matches(&fields, &event.object)
    };
    tokio::spawn(async move {
        // Written around the stored object rather than through a new JSON value: no deep copy
        // of every object for every watcher.
        let line = |event: &super::store::WatchEvent| {
            Ok(Bytes::from(format!("{{\"type\":\"{}\",\"object\":{}}}\n", event.kind, event.object)))
        };
        let mut last = from.unwrap_or(0);
        for event in backlog.iter().filter(|e| matches(e)) {
            last = last.max(event.resource_version);
            if sender.send(line(event)).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::sleep(std::time::Duration::from_secs(timeout));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                event = receiver.recv() => match event {
                    Ok(event) if event.key.type_index == route.type_index && event.resource_version > last && matches(&event) => {
                        last = event.resource_version;
                        if sender.send(line(&event)).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => return,
                },
                _ = &mut deadline => return,
                _ = closed.changed() => return,
            }
        }
    });
    let stream =
        futures::stream::unfold(
            receiver_body,
            |mut rx| async move { rx.recv().await.map(|item| (item, rx)) },
        );
    Response::builder()
        .status(200)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .unwrap()
}

/// `/version`, `/api`, `/apis`, the group and resource lists kubectl discovers, and a minimal
/// OpenAPI document.
fn discovery(shared: &Shared, path: &str) -> Option<Response> {
    let store = shared.store.lock().unwrap();
    let types = &store.types;
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let group_versions = |group: &str| -> Vec<String> {
        let mut versions: Vec<String> =
            types.iter().filter(|t| t.group == group).map(|t| t.version.clone()).collect();
        versions.dedup();
        versions
    };
    let group_json = |group: &str| {
        let versions: Vec<Value> = group_versions(group)
            .iter()
            .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
            .collect();
        json!({"name": group, "versions": versions, "preferredVersion": versions[0]})
    };
    let resource_list = |group: &str, version: &str| -> Option<Value> {
        let mut resources = Vec::new();
        for t in types.iter().filter(|t| t.group == group && t.version == version) {
            resources.push(json!({
                "name": t.plural, "singularName": t.singular(), "namespaced": t.namespaced, "kind": t.kind,
                "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
                "shortNames": t.short_names, "categories": t.categories,
            }));
            if t.status_subresource {
                resources.push(json!({"name": format!("{}/status", t.plural), "singularName": "", "namespaced": t.namespaced, "kind": t.kind, "verbs": ["get", "patch", "update"]}));
            }
        }
        if resources.is_empty() {
            return None;
        }
        let group_version = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
        Some(
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}),
        )
    };
    let body = match segments.as_slice() {
        ["version"] => {
            json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-twin-fake", "platform": "linux/amd64",
                              "goVersion": "go1.24", "compiler": "gc", "buildDate": "2026-01-01T00:00:00Z", "gitCommit": "0", "gitTreeState": "clean"})
        }
        ["api"] => {
            json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]})
        }
        ["apis"] => {
            let mut groups: Vec<&str> =
                types.iter().map(|t| t.group.as_str()).filter(|g| !g.is_empty()).collect();
            groups.dedup();
            groups.sort();
            groups.dedup();
            json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups.iter().map(|g| group_json(g)).collect::<Vec<_>>()})
        }
        ["api", version] => resource_list("", version)?,
        ["apis", group] if types.iter().any(|t| t.group == *group) => {
            let mut group = group_json(group);
            group["kind"] = json!("APIGroup");
            group["apiVersion"] = json!("v1");
            group
        }
        ["apis", group, version] => resource_list(group, version)?,
        ["openapi", "v2"] => {
            json!({"swagger": "2.0", "info": {"title": "twin fake API server", "version": "v1.33.0"}, "paths": {}, "definitions": {}})
        }
        ["openapi", "v3"] => {
            let mut paths = serde_json::Map::new();
            for t in types.iter() {
                let gv = if t.group.is_empty() {
                    format!("api/{}", t.version)
                } else {
                    format!("apis/{}/{}", t.group, t.version)
                };
                paths.insert(
                    gv.clone(),
                    json!({"serverRelativeURL": format!("/openapi/v3/{gv}?hash=twin-fake")}),
                );
            }
            json!({"paths": paths})
        }
        ["openapi", "v3", "api", version] => openapi_group_version(types, "", version)?,
        ["openapi", "v3", "apis", group, version] => openapi_group_version(types, group, version)?,
        ["healthz" | "readyz" | "livez"] => return Some((StatusCode::OK, "ok").into_response()),
        _ => return None,
    };
    Some(json_response(200, &body))
}

/// The OpenAPI v3 document of one group-version: a PATCH operation per resource that accepts
/// `fieldValidation` (so kubectl leaves validation to the server), and the CRDs' schemas with
/// their group-version-kind (for `kubectl explain`).
fn openapi_group_version(
    types: &[super::registry::ResourceType],
    group: &str,
    version: &str,
) -> Option<Value> {
    let mut paths = serde_json::Map::new();
    let mut schemas = serde_json::Map::new();
    for t in types.iter().filter(|t| t.group == group && t.version == version) {
        let gvk = json!({"group": group, "version": version, "kind": t.kind});
        let prefix =
            if group.is_empty() { format!("/api/{version}") } else { format!("/apis/{group}/{version}") };
        let path = if t.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", t.plural)
        } else {
            format!("{prefix}/{}/{{name}}", t.plural)
        };
        let parameters = json!([
            {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "force", "in": "query", "schema": {"type": "boolean", "uniqueItems": true}},
        ]);
        paths.insert(
            path,
            json!({"patch": {
                "operationId": format!("patch{}", t.kind), "x-kubernetes-group-version-kind": gvk,
                "parameters": parameters, "responses": {"200": {"description": "OK"}},
            }}),
        );
        if let Some(schema) = &t.schema {
            let mut definition = schema.openapi_schema.clone();
            definition["x-kubernetes-group-version-kind"] = json!([gvk]);
            let name =
                format!("{}.{version}.{}", group.split('.').rev().collect::<Vec<_>>().join("."), t.kind);
            schemas.insert(name, definition);
        }
    }
    if paths.is_empty() {
        return None;
    }
    Some(
        json!({"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.33.0"}, "paths": paths, "components": {"schemas": schemas}}),
    )
}
