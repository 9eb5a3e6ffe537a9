//! What the watches last saw of each owned child that is applied but never read back (the two
//! Services, the PDB, the membership ConfigMap and the NetworkPolicy): only what decides whether
//! a pass must apply it again (its UID, the hash of what was applied, whether another field
//! manager wrote it, whether it is being deleted), kept from metadata-only watches.
//!
//! It serves two purposes:
//! - a pass skips the GET of a child that the watch shows as already applied with the hash it
//!   would apply, and of a child the watch has listed as missing (a new cluster's children: the
//!   read would answer 404); while a kind's watch has not listed yet, or relists, a child the
//!   index does not know is read first;
//! - a watch event of a child triggers a pass of its cluster only when that state changed (or
//!   the child was deleted): the PDB's status written by the disruption controller, or the
//!   operator's own creation of a child, recorded here when its apply returns, cost no pass.
//!
//! The index follows the watch, relists included: an entry not listed again after a watch
//! restarts is dropped, so a child deleted while the watch was down is read, and applied, again.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use kube::Resource;
use kube::api::ObjectMeta;
use kube::core::PartialObjectMeta;
use kube::runtime::watcher;

use crate::names::{APPLIED_HASH_ANNOTATION, MANAGER};

/// One child: its kind (the Rust type's kind) and where it is.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    kind: &'static str,
    namespace: String,
    name: String,
}

impl Key {
    fn of(kind: &'static str, meta: &ObjectMeta) -> Self {
        Key {
            kind,
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
        }
    }
}

/// What a pass depends on of one child.
#[derive(Clone, Debug, PartialEq, Eq)]
struct State {
    uid: String,
    applied_hash: Option<String>,
    foreign_writer: bool,
    deleting: bool,
}

impl State {
    fn of(meta: &ObjectMeta) -> Self {
        State {
            uid: meta.uid.clone().unwrap_or_default(),
            applied_hash: meta
                .annotations
                .as_ref()
                .and_then(|a| a.get(APPLIED_HASH_ANNOTATION))
                .cloned(),
            foreign_writer: foreign_writer(meta),
            deleting: meta.deletion_timestamp.is_some(),
        }
    }
}

/// Whether a field manager other than the operator owns fields outside the status.
pub fn foreign_writer(meta: &ObjectMeta) -> bool {
    meta.managed_fields.iter().flatten().any(|f| {
        f.manager.as_deref() != Some(MANAGER) && f.subresource.as_deref() != Some("status")
    })
}

#[derive(Default)]
struct Inner {
    seen: HashMap<Key, State>,
    /// Per kind, while its watch relists: the children listed so far.
    relisting: HashMap<&'static str, HashSet<Key>>,
    /// The kinds whose watch has listed and is not relisting: what it does not hold is missing.
    synced: HashSet<&'static str>,
}

/// The index; see the module's documentation.
#[derive(Default)]
pub struct Children {
    inner: Mutex<Inner>,
}

impl Children {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records what the watch (or an apply's answer) shows of a child; true when it differs
    /// from what was recorded before (or nothing was).
    pub fn observe(&self, kind: &'static str, meta: &ObjectMeta) -> bool {
        let key = Key::of(kind, meta);
        let state = State::of(meta);
        let mut inner = self.lock();
        if let Some(listed) = inner.relisting.get_mut(kind) {
            listed.insert(key.clone());
        }
        inner.seen.insert(key, state.clone()) != Some(state)
    }

    /// The watch saw the child deleted.
    pub fn forget(&self, kind: &'static str, meta: &ObjectMeta) {
        self.lock().seen.remove(&Key::of(kind, meta));
    }

    /// Whether the watch shows the child applied with `hash`, written by the operator alone and
    /// not being deleted: then the pass need not read or apply it.
    pub fn current(&self, kind: &'static str, namespace: &str, name: &str, hash: &str) -> bool {
        let key = Key {
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
        };
        self.lock().seen.get(&key).is_some_and(|s| {
            s.applied_hash.as_deref() == Some(hash) && !s.foreign_writer && !s.deleting
        })
    }

    /// Whether the child is missing: its kind's watch has listed (and is not relisting) and
    /// holds no such child. Then a pass applies it without reading it first. A child created
    /// so recently that its event has not arrived is applied again, which changes nothing.
    pub fn absent(&self, kind: &'static str, namespace: &str, name: &str) -> bool {
        let key = Key {
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
        };
        let inner = self.lock();
        inner.synced.contains(kind) && !inner.seen.contains_key(&key)
    }

    /// How many children are recorded.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().seen.len()
    }

    /// Whether no child is recorded.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn relist_started(&self, kind: &'static str) {
        let mut inner = self.lock();
        inner.synced.remove(kind);
        inner.relisting.insert(kind, HashSet::new());
    }

    fn relist_done(&self, kind: &'static str) {
        let mut inner = self.lock();
        if let Some(listed) = inner.relisting.remove(kind) {
            inner
                .seen
                .retain(|key, _| key.kind != kind || listed.contains(key));
        }
        inner.synced.insert(kind);
    }

    /// One watch event of a child of kind `kind`: updates the index and returns the object
    /// when it should trigger a pass of its owner.
    pub fn on_event<K>(
        &self,
        kind: &'static str,
        event: watcher::Event<PartialObjectMeta<K>>,
    ) -> Option<PartialObjectMeta<K>> {
        match event {
            watcher::Event::Apply(obj) | watcher::Event::InitApply(obj) => {
                self.observe(kind, &obj.metadata).then_some(obj)
            }
            watcher::Event::Delete(obj) => {
                self.forget(kind, &obj.metadata);
                Some(obj)
            }
            watcher::Event::Init => {
                self.relist_started(kind);
                None
            }
            watcher::Event::InitDone => {
                self.relist_done(kind);
                None
            }
        }
    }
}

/// Drops what a pass never reads of a cluster object kept in the controller's store: its
/// managed fields and a client-side apply's copy of the whole object.
pub fn compact_cluster<K: Resource>(obj: &mut K) {
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, Time};

    fn meta(name: &str, hash: Option<&str>, managers: &[(&str, Option<&str>)]) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some("ns".to_string()),
            uid: Some(format!("uid-{name}")),
            annotations: hash
                .map(|h| [(APPLIED_HASH_ANNOTATION.to_string(), h.to_string())].into()),
            managed_fields: Some(
                managers
                    .iter()
                    .map(|(m, sub)| ManagedFieldsEntry {
                        manager: Some(m.to_string()),
                        subresource: sub.map(str::to_string),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }
    }

    fn event(m: ObjectMeta) -> PartialObjectMeta<Service> {
        PartialObjectMeta {
            metadata: m,
            ..Default::default()
        }
    }

    #[test]
    fn a_child_applied_with_the_same_hash_by_the_operator_alone_is_current() {
        let c = Children::default();
        assert!(
            !c.current("Service", "ns", "zk-hs", "h1"),
            "unknown: read it"
        );
        assert!(c.observe("Service", &meta("zk-hs", Some("h1"), &[(MANAGER, None)])));
        assert!(c.current("Service", "ns", "zk-hs", "h1"));
        assert!(!c.current("Service", "ns", "zk-hs", "h2"), "another hash");
        assert!(
            !c.current("PodDisruptionBudget", "ns", "zk-hs", "h1"),
            "kind is part of the key"
        );
        // a status writer is not a foreign writer; a spec writer is
        assert!(!c.observe(
            "Service",
            &meta(
                "zk-hs",
                Some("h1"),
                &[(MANAGER, None), ("kcm", Some("status"))]
            )
        ));
        assert!(c.current("Service", "ns", "zk-hs", "h1"));
        assert!(c.observe(
            "Service",
            &meta(
                "zk-hs",
                Some("h1"),
                &[(MANAGER, None), ("kubectl-edit", None)]
            )
        ));
        assert!(!c.current("Service", "ns", "zk-hs", "h1"));
    }

    #[test]
    fn a_child_being_deleted_or_deleted_is_not_current() {
        let c = Children::default();
        let mut m = meta("zk-pdb", Some("h"), &[(MANAGER, None)]);
        c.observe("PodDisruptionBudget", &m);
        m.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
        assert!(
            c.observe("PodDisruptionBudget", &m),
            "deletion starting is a change"
        );
        assert!(!c.current("PodDisruptionBudget", "ns", "zk-pdb", "h"));
        c.forget("PodDisruptionBudget", &m);
        assert!(!c.current("PodDisruptionBudget", "ns", "zk-pdb", "h"));
        assert!(c.is_empty());
    }

    #[test]
    fn only_changes_and_deletions_trigger_and_a_relist_drops_what_it_did_not_list() {
        let c = Children::default();
        let a = meta("a", Some("h"), &[(MANAGER, None)]);
        let b = meta("b", Some("h"), &[(MANAGER, None)]);
        // the operator's own apply recorded first: the watch's ADDED is no change
        assert!(c.observe("Service", &a));
        assert!(
            c.on_event("Service", watcher::Event::Apply(event(a.clone())))
                .is_none()
        );
        // a status-only update (same metadata state) does not trigger either
        assert!(
            c.on_event("Service", watcher::Event::Apply(event(a.clone())))
                .is_none()
        );
        assert!(
            c.on_event("Service", watcher::Event::Apply(event(b.clone())))
                .is_some()
        );
        // a deletion always triggers, even with nothing else changed
        assert!(
            c.on_event("Service", watcher::Event::Delete(event(b.clone())))
                .is_some()
        );
        assert!(!c.current("Service", "ns", "b", "h"));
        c.observe("Service", &b);
        // the watch restarts and lists only `a`: `b` (deleted meanwhile) is dropped
        assert!(
            c.on_event::<Service>("Service", watcher::Event::Init)
                .is_none()
        );
        assert!(
            c.on_event("Service", watcher::Event::InitApply(event(a.clone())))
                .is_none()
        );
        assert!(
            c.on_event::<Service>("Service", watcher::Event::InitDone)
                .is_none()
        );
        assert!(c.current("Service", "ns", "a", "h"));
        assert!(
            !c.current("Service", "ns", "b", "h"),
            "not listed again: read it"
        );
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn a_child_is_known_missing_only_while_its_kinds_watch_has_listed() {
        let c = Children::default();
        let a = meta("a", Some("h"), &[(MANAGER, None)]);
        assert!(
            !c.absent("Service", "ns", "b"),
            "the watch has not listed: read it"
        );
        c.on_event::<Service>("Service", watcher::Event::Init);
        c.on_event("Service", watcher::Event::InitApply(event(a.clone())));
        assert!(!c.absent("Service", "ns", "b"), "still listing: read it");
        c.on_event::<Service>("Service", watcher::Event::InitDone);
        assert!(c.absent("Service", "ns", "b"), "listed, and not there");
        assert!(!c.absent("Service", "ns", "a"), "listed");
        assert!(
            !c.absent("PodDisruptionBudget", "ns", "b"),
            "another kind's watch has not listed"
        );
        // the watch restarts: until it has listed again, nothing is known missing
        c.on_event::<Service>("Service", watcher::Event::Init);
        assert!(!c.absent("Service", "ns", "b"));
        c.on_event::<Service>("Service", watcher::Event::InitDone);
        assert!(c.absent("Service", "ns", "a"), "not listed again: gone");
        // the operator's own apply is recorded before the watch sees it
        c.observe("Service", &meta("b", Some("h"), &[(MANAGER, None)]));
        assert!(!c.absent("Service", "ns", "b"));
    }

    #[test]
    fn compacting_a_cluster_keeps_everything_but_managed_fields_and_the_applied_copy() {
        let mut m = meta("zk", Some("h"), &[(MANAGER, None)]);
        m.annotations.as_mut().unwrap().insert(
            "kubectl.kubernetes.io/last-applied-configuration".into(),
            "{...}".into(),
        );
        let mut svc = Service {
            metadata: m,
            ..Default::default()
        };
        compact_cluster(&mut svc);
        assert!(svc.metadata.managed_fields.is_none());
        assert_eq!(
            svc.metadata.annotations.unwrap().keys().collect::<Vec<_>>(),
            vec![APPLIED_HASH_ANNOTATION]
        );
    }
}
