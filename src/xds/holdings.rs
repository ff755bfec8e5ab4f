//! What a proxy holds of one resource type, without a copy of the resources: the resources of
//! a shared snapshot type that it was sent (all of them, or those of the names it subscribed
//! to), with the few names that differ from that on top.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::snapshot::TypeResources;
use super::wire::Packed;

/// A set of resource names. Each name's bytes are stored once (`Arc<str>`) and shared by a
/// stream's subscription, what its proxy holds and the registry; the set itself is shared too.
pub type Names = BTreeSet<Arc<str>>;

/// One resource a proxy holds at a version other than its base's.
#[derive(Clone, Debug, PartialEq)]
pub struct Held {
    pub version: String,
    /// `None` when only the version is known (what a reconnecting Delta client claims).
    pub packed: Option<Packed>,
}

/// A proxy's resources of one type: `base` filtered by `names` (all when `None`), then
/// `changes` (a name → what is held instead; `None`: nothing).
#[derive(Clone, Debug, Default)]
pub struct Holdings {
    base: Option<Arc<TypeResources>>,
    names: Option<Arc<Names>>,
    changes: BTreeMap<Arc<str>, Option<Held>>,
}

impl Holdings {
    /// Holds exactly the resources of `base` that `names` selects (every one when `None`).
    pub fn of(base: Arc<TypeResources>, names: Option<Arc<Names>>) -> Self {
        Self {
            base: Some(base),
            names,
            changes: BTreeMap::new(),
        }
    }

    /// Records that `name` is held as `held` (or not at all), whatever the base says.
    pub fn set(&mut self, name: Arc<str>, held: Option<Held>) {
        self.changes.insert(name, held);
    }

    /// Whether this is exactly `resources`, with no changes: nothing to compare.
    pub fn is_exactly(&self, resources: &Arc<TypeResources>) -> bool {
        self.changes.is_empty()
            && self
                .base
                .as_ref()
                .is_some_and(|base| Arc::ptr_eq(base, resources))
    }

    /// The version of `name` held, if any.
    pub fn version(&self, name: &str) -> Option<&str> {
        if let Some(change) = self.changes.get(name) {
            return change.as_ref().map(|held| held.version.as_str());
        }
        self.in_base(name).map(|resource| resource.version.as_str())
    }

    fn in_base(&self, name: &str) -> Option<&super::snapshot::Resource> {
        let selected = self.names.as_ref().is_none_or(|names| names.contains(name));
        selected.then(|| self.base.as_ref()?.resources.get(name))?
    }

    /// Every held resource: name, version and content when known, by name.
    pub fn held(&self) -> BTreeMap<&str, Held> {
        let mut held: BTreeMap<&str, Held> = BTreeMap::new();
        let mut hold = |name, resource: &super::snapshot::Resource| {
            let packed = Some(resource.packed.clone());
            let version = resource.version.clone();
            held.insert(name, Held { version, packed });
        };
        match (&self.base, &self.names) {
            // A subscription may name few of many: walk the names.
            (Some(base), Some(names)) => {
                for name in names.iter() {
                    if let Some((name, resource)) = base.resources.get_key_value(&**name) {
                        hold(name.as_str(), resource);
                    }
                }
            }
            (Some(base), None) => {
                for (name, resource) in &base.resources {
                    hold(name.as_str(), resource);
                }
            }
            (None, _) => {}
        }
        for (name, change) in &self.changes {
            match change {
                Some(change) => held.insert(name, change.clone()),
                None => held.remove(&**name),
            };
        }
        held
    }

    /// The content of every held resource whose content is known, by name.
    pub fn contents(&self) -> Vec<Packed> {
        self.held()
            .into_values()
            .filter_map(|held| held.packed)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xds::snapshot::Resource;

    fn resources(names: &[(&str, &str)]) -> Arc<TypeResources> {
        let resources = names
            .iter()
            .map(|(name, version)| {
                let resource = Resource {
                    name: name.to_string(),
                    version: version.to_string(),
                    packed: Packed::new(
                        &envoy_types::pb::envoy::config::cluster::v3::Cluster::default(),
                    ),
                };
                (name.to_string(), resource)
            })
            .collect();
        Arc::new(TypeResources {
            version: "1".to_string(),
            resources,
            absent: None,
        })
    }

    #[test]
    fn the_base_filtered_by_names_then_the_changes() {
        let base = resources(&[("a", "1"), ("b", "1"), ("c", "1")]);
        let names = ["a", "b"].map(Arc::from).into_iter().collect();
        let mut holdings = Holdings::of(Arc::clone(&base), Some(Arc::new(names)));
        assert!(holdings.is_exactly(&base));
        assert_eq!(holdings.version("a"), Some("1"));
        assert_eq!(holdings.version("c"), None, "not subscribed");
        holdings.set("a".into(), None);
        holdings.set(
            "z".into(),
            Some(Held {
                version: "9".into(),
                packed: None,
            }),
        );
        assert!(!holdings.is_exactly(&base));
        assert_eq!(holdings.version("a"), None);
        assert_eq!(holdings.version("z"), Some("9"));
        let held: Vec<&str> = holdings.held().into_keys().collect();
        assert_eq!(held, ["b", "z"]);
        assert_eq!(holdings.contents().len(), 1, "z's content is unknown");
    }
}
