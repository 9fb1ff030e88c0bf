//! The one child applier. A builder hands it a [`ChildSet`]: the desired children in the order
//! they are applied, and the kinds it manages. The applier server-side applies each child with
//! the operator's one field manager, in that order (builders put what others mount or select
//! first: ConfigMaps and Services before the workloads, workloads before their autoscalers,
//! disruption budgets and monitors), then deletes the children of each managed kind that the
//! set no longer holds: those labelled with the owner's instance and controlled by the owner
//! (its controller owner reference), never a look-alike of another twin.
//!
//! Any kind works, typed (k8s-openapi) or not (a ServiceMonitor as a `DynamicObject`), so a
//! new controller brings children without new applier code.

pub mod job;
pub mod naming;
pub mod pod;

use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::Serialize;

use super::context::{Context, FIELD_MANAGER};
use super::error::{Error, Result};
use crate::contract::labels;
use naming::{instance_label, is_controlled_by};

/// How a child is brought to its desired state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyPolicy {
    /// Server-side applied on every reconcile: drift is corrected.
    Apply,
    /// Created when missing and then left alone: for children whose spec cannot change once
    /// created (a Job's pod template), where a new spec gets a child of its own name.
    CreateOnce,
}

/// One desired child, with `apiVersion` and `kind` set as server-side apply needs them.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub struct Child {
    /// The child's API.
    pub resource: ApiResource,
    pub name: String,
    /// The object to apply.
    pub object: serde_json::Value,
    /// How it is applied.
    pub policy: ApplyPolicy,
}

/// The desired children of one twin, in apply order, and the kinds whose unwanted children
/// are deleted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChildSet {
    children: Vec<Child>,
    managed: Vec<ApiResource>,
}

impl ChildSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a child, applied after those added before it.
    pub fn add<C>(&mut self, child: &C, policy: ApplyPolicy) -> Result<()>
    where
        C: Resource<DynamicType = ()> + Serialize,
    {
        self.push(ApiResource::erase::<C>(&()), child.meta().name.clone(), child, policy)
    }

    /// Adds a child of a kind without a Rust type (a ServiceMonitor of the Prometheus Operator).
    pub fn add_dynamic(
        &mut self,
        child: &DynamicObject,
        resource: &ApiResource,
        policy: ApplyPolicy,
    ) -> Result<()> {
        self.push(resource.clone(), child.metadata.name.clone(), child, policy)
    }

    fn push(
        &mut self,
        resource: ApiResource,
        name: Option<String>,
        child: &impl Serialize,
        policy: ApplyPolicy,
    ) -> Result<()> {
        let name = name.ok_or(Error::Unidentified("child name"))?;
        let mut object =
            serde_json::to_value(child).map_err(|source| Error::Serialize { what: "a child", source })?;
        object["apiVersion"] = resource.api_version.clone().into();
        object["kind"] = resource.kind.clone().into();
        self.children.push(Child { resource, name, object, policy });
        Ok(())
    }

    /// Marks a kind as managed: its children that this set does not hold are deleted.
    pub fn manage<C: Resource<DynamicType = ()>>(&mut self) {
        self.manage_dynamic(&ApiResource::erase::<C>(&()));
    }

    /// The children, in apply order.
    pub fn children(&self) -> &[Child] {
        &self.children
    }

    /// A child by kind and name.
    pub fn get(&self, kind: &str, name: &str) -> Option<&Child> {
        self.children.iter().find(|c| c.resource.kind == kind && c.name == name)
    }

    /// Marks a kind without a Rust type as managed.
    pub fn manage_dynamic(&mut self, resource: &ApiResource) {
        if !self.managed.contains(resource) {
            self.managed.push(resource.clone());
        }
    }

    fn wants(&self, resource: &ApiResource, name: &str) -> bool {
        self.children.iter().any(|c| c.resource == *resource && c.name == name)
    }
}

/// Applies `set` for `owner` in its namespace, then deletes the managed children it no longer
/// wants.
pub async fn apply_children<K>(ctx: &Context, owner: &K, set: &ChildSet) -> Result<()>
where
    K: Resource<DynamicType = ()>,
{
    let namespace = owner.meta().namespace.as_deref().ok_or(Error::Unidentified("namespace"))?;
    let params = PatchParams::apply(FIELD_MANAGER).force();
    for child in &set.children {
        let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), namespace, &child.resource);
        let failed = |source| Error::ApplyChild {
            kind: child.resource.kind.clone(),
            name: child.name.clone(),
            source,
        };
        if child.policy == ApplyPolicy::CreateOnce
            && api.get_opt(&child.name).await.map_err(failed)?.is_some()
        {
            continue;
        }
        api.patch(&child.name, &params, &Patch::Apply(&child.object)).await.map_err(failed)?;
    }
    if set.managed.is_empty() {
        return Ok(());
    }
    let owner_uid = owner.meta().uid.as_deref().ok_or(Error::Unidentified("uid"))?;
    let owner_name = owner.meta().name.as_deref().ok_or(Error::Unidentified("name"))?;
    let selector = format!(
        "{}={},{}={}",
        labels::INSTANCE,
        instance_label(owner_name),
        labels::MANAGED_BY,
        labels::OPERATOR
    );
    for resource in &set.managed {
        let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), namespace, resource);
        let existing = match api.list(&ListParams::default().labels(&selector)).await {
            Ok(existing) => existing,
            // A kind whose CRD is not installed (KEDA, the Prometheus Operator) has no children.
            Err(kube::Error::Api(status)) if status.code == 404 => continue,
            Err(source) => return Err(Error::ListChildren { kind: resource.kind.clone(), source }),
        };
        for object in existing {
            let name = object.name_any();
            if !is_controlled_by(&object.metadata, owner_uid) || set.wants(resource, &name) {
                continue;
            }
            match api.delete(&name, &DeleteParams::background()).await {
                Ok(_) => {
                    tracing::info!(kind = %resource.kind, %name, "deleted a child that is no longer wanted")
                }
                // Gone already: what deletion wanted.
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(source) => return Err(Error::DeleteChild { kind: resource.kind.clone(), name, source }),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{ConfigMap, Service};
    use kube::api::{ApiResource, DynamicObject, GroupVersionKind};

    use super::*;

    #[test]
    fn children_keep_their_order_and_any_kind_can_join() {
        let named = |name: &str| kube::api::ObjectMeta { name: Some(name.into()), ..Default::default() };
        let mut set = ChildSet::new();
        set.add(&ConfigMap { metadata: named("paul-config"), ..Default::default() }, ApplyPolicy::Apply)
            .unwrap();
        set.add(&Service { metadata: named("paul"), ..Default::default() }, ApplyPolicy::Apply).unwrap();
        let monitors =
            ApiResource::from_gvk(&GroupVersionKind::gvk("monitoring.coreos.com", "v1", "ServiceMonitor"));
        let monitor = DynamicObject::new("paul", &monitors);
        set.add_dynamic(&monitor, &monitors, ApplyPolicy::Apply).unwrap();
        set.manage::<Service>();
        set.manage_dynamic(&monitors);
        set.manage::<Service>();
        let order: Vec<(&str, &str)> =
            set.children().iter().map(|c| (c.resource.kind.as_str(), c.name.as_str())).collect();
        assert_eq!(order, [("ConfigMap", "paul-config"), ("Service", "paul"), ("ServiceMonitor", "paul")]);
        let applied = &set.get("ServiceMonitor", "paul").unwrap().object;
        assert_eq!(
            (applied["apiVersion"].as_str(), applied["kind"].as_str()),
            (Some("monitoring.coreos.com/v1"), Some("ServiceMonitor"))
        );
        assert_eq!(set.get("Service", "paul").unwrap().object["apiVersion"], "v1");
        assert_eq!(set.managed.len(), 2, "a kind is managed once");
        assert!(set.wants(&monitors, "paul") && !set.wants(&monitors, "other"));
    }

    #[test]
    fn a_child_without_a_name_is_refused() {
        let error = ChildSet::new().add(&ConfigMap::default(), ApplyPolicy::Apply).unwrap_err();
        assert!(error.is_permanent() && error.to_string().contains("child name"), "{error}");
    }
}
