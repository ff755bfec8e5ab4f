//! Looking keys up in a sorted map when they are asked for in order.

use std::borrow::Borrow;
use std::collections::{BTreeMap, btree_map};
use std::iter::Peekable;

/// A map whose entries are sorted by key: walked in that order, or searched.
pub trait Sorted<'a>: Copy {
    type Key: Ord + 'a;
    type Value: 'a;
    type Walk: Iterator<Item = (&'a Self::Key, &'a Self::Value)>;

    fn walk(self) -> Self::Walk;

    fn search<Q>(self, key: &Q) -> Option<(&'a Self::Key, &'a Self::Value)>
    where
        Self::Key: Borrow<Q>,
        Q: Ord + ?Sized;
}

impl<'a, K: Ord + 'a, V: 'a> Sorted<'a> for &'a BTreeMap<K, V> {
    type Key = K;
    type Value = V;
    type Walk = btree_map::Iter<'a, K, V>;

    fn walk(self) -> Self::Walk {
        self.iter()
    }

    fn search<Q>(self, key: &Q) -> Option<(&'a K, &'a V)>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.get_key_value(key)
    }
}

/// A list of entries in increasing key order, each key once.
impl<'a, K: Ord + 'a, V: 'a> Sorted<'a> for &'a [(K, V)] {
    type Key = K;
    type Value = V;
    type Walk = std::iter::Map<std::slice::Iter<'a, (K, V)>, fn(&'a (K, V)) -> (&'a K, &'a V)>;

    fn walk(self) -> Self::Walk {
        self.iter().map(|(key, value)| (key, value))
    }

    fn search<Q>(self, key: &Q) -> Option<(&'a K, &'a V)>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        let at = (self.binary_search_by(|(at, _)| at.borrow().cmp(key))).ok()?;
        let (key, value) = &self[at];
        Some((key, value))
    }
}

/// Finds keys of a sorted map that are asked for in increasing order: it walks the map
/// alongside instead of searching it for each key, and searches only for a key asked out of
/// that order. A pass over a map of n keys costs n steps, not n searches.
pub struct Alongside<'a, M: Sorted<'a>> {
    map: M,
    walk: Peekable<M::Walk>,
}

impl<'a, M: Sorted<'a>> Alongside<'a, M> {
    pub fn new(map: M) -> Self {
        Self {
            map,
            walk: map.walk().peekable(),
        }
    }

    /// The entry of `key`, if the map has one.
    pub fn find<Q>(&mut self, key: &Q) -> Option<(&'a M::Key, &'a M::Value)>
    where
        M::Key: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        while (self.walk)
            .next_if(|(at, _)| (*at).borrow() < key)
            .is_some()
        {}
        match self.walk.next_if(|(at, _)| (*at).borrow() == key) {
            Some(found) => Some(found),
            None => self.map.search(key),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_found_in_order_and_out_of_it() {
        fn finds<'a>(map: impl Sorted<'a, Key = String, Value = u32>) {
            let mut alongside = Alongside::new(map);
            assert_eq!(alongside.find("a").map(|(_, v)| *v), Some(1));
            assert_eq!(alongside.find("b"), None);
            assert_eq!(alongside.find("e").map(|(_, v)| *v), Some(5));
            // Behind the walk: found by a search.
            assert_eq!(alongside.find("c").map(|(_, v)| *v), Some(3));
            assert_eq!(alongside.find("z"), None);
        }
        let map: BTreeMap<String, u32> = [("a", 1), ("c", 3), ("e", 5)]
            .into_iter()
            .map(|(key, value)| (key.to_string(), value))
            .collect();
        finds(&map);
        let list: Vec<(String, u32)> = map.into_iter().collect();
        finds(&list[..]);
    }
}
