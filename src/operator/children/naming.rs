//! The names, labels and owner references every child carries. Names are deterministic,
//! unique and within each kind's limit: a name too long is cut and the hash of the whole name
//! appended, never just cut, so two twins whose names share a long prefix keep apart.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;

use crate::contract::labels;
use crate::hashing::sha256_hex;

/// The longest name of most children (a DNS label; a Job's name also becomes a pod label).
pub const NAME_LIMIT: usize = 63;
/// The longest CronJob name: Kubernetes appends an 11-character schedule suffix to its Jobs.
pub const CRONJOB_NAME_LIMIT: usize = 52;
/// The longest label value.
const LABEL_VALUE_LIMIT: usize = 63;
/// Hex digits of the hash appended to a cut name.
const HASH_LEN: usize = 8;

/// `<owner><suffix>` within `limit` characters: the owner's part cut and a hash of the whole
/// name appended when it is too long.
pub fn child_name(owner: &str, suffix: &str, limit: usize) -> String {
    let full = format!("{owner}{suffix}");
    if full.len() <= limit {
        return full;
    }
    let hash = &sha256_hex(full.as_bytes())[..HASH_LEN];
    let mut keep = limit.saturating_sub(suffix.len() + HASH_LEN + 1).min(owner.len());
    while !owner.is_char_boundary(keep) {
        keep -= 1;
    }
    let base = owner[..keep].trim_end_matches(['-', '.']);
    if base.is_empty() { format!("{hash}{suffix}") } else { format!("{base}-{hash}{suffix}") }
}

/// The `app.kubernetes.io/*` labels of a child of `instance` (the owning twin's name) in
/// `component`, part of `name` (`twin-dataset`, ...).
pub fn child_labels(name: &str, instance: &str, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::NAME.into(), name.into()),
        (labels::INSTANCE.into(), instance_label(instance)),
        (labels::COMPONENT.into(), component.into()),
        (labels::MANAGED_BY.into(), labels::OPERATOR.into()),
        (labels::PART_OF.into(), labels::OPERATOR.into()),
    ])
}

/// The instance label's value: the owner's name, hashed when longer than a label allows. A
/// label selects candidates only; the owner reference decides.
pub fn instance_label(owner: &str) -> String {
    child_name(owner, "", LABEL_VALUE_LIMIT)
}

/// The controller owner reference to a twin: its children go when it goes.
pub fn owner_reference<K: Resource<DynamicType = ()>>(owner: &K) -> Option<OwnerReference> {
    owner.controller_owner_ref(&())
}

/// Whether an object's controller owner reference names the object with this uid.
pub fn is_controlled_by(meta: &ObjectMeta, owner_uid: &str) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|reference| reference.controller == Some(true) && reference.uid == owner_uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_kept_and_long_ones_are_cut_with_a_hash_of_the_whole() {
        assert_eq!(child_name("paul", "-refresh", CRONJOB_NAME_LIMIT), "paul-refresh");
        let prefix = "a".repeat(43);
        let first = child_name(&format!("{prefix}-first"), "-refresh", CRONJOB_NAME_LIMIT);
        let second = child_name(&format!("{prefix}-second"), "-refresh", CRONJOB_NAME_LIMIT);
        assert_ne!(first, second);
        for name in [&first, &second] {
            assert!(name.len() <= CRONJOB_NAME_LIMIT && name.ends_with("-refresh"), "{name}");
        }
        let longest = child_name(&"b".repeat(253), "-build-12", NAME_LIMIT);
        assert!(longest.len() <= NAME_LIMIT && longest.ends_with("-build-12"), "{longest}");
        assert_eq!(instance_label("paul"), "paul");
        assert_eq!(instance_label(&"c".repeat(70)).len(), 63);
    }
}
