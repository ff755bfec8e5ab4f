//! Looking keys up in a sorted map when they are asked for in order.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::collections::btree_map::Iter;
use std::iter::Peekable;

/// Finds keys of a sorted map that are asked for in increasing order: it walks the map
/// alongside instead of searching it for each key, and searches only for a key asked out of
/// that order. A pass over a map of n keys costs n steps, not n searches.
pub struct Alongside<'a, K, V> {
    map: &'a BTreeMap<K, V>,
    walk: Peekable<Iter<'a, K, V>>,
}

impl<'a, K: Ord, V> Alongside<'a, K, V> {
    pub fn new(map: &'a BTreeMap<K, V>) -> Self {
        Self {
            map,
            walk: map.iter().peekable(),
        }
    }

    /// The entry of `key`, if the map has one.
    pub fn find<Q>(&mut self, key: &Q) -> Option<(&'a K, &'a V)>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        while (self.walk)
            .next_if(|(at, _)| (*at).borrow() < key)
            .is_some()
        {}
        match self.walk.next_if(|(at, _)| (*at).borrow() == key) {
            Some(found) => Some(found),
            None => self.map.get_key_value(key),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_found_in_order_and_out_of_it() {
        let map: BTreeMap<String, u32> = [("a", 1), ("c", 3), ("e", 5)]
            .into_iter()
            .map(|(key, value)| (key.to_string(), value))
            .collect();
        let mut alongside = Alongside::new(&map);
        assert_eq!(alongside.find("a").map(|(_, v)| *v), Some(1));
        assert_eq!(alongside.find("b"), None);
        assert_eq!(alongside.find("e").map(|(_, v)| *v), Some(5));
        // Behind the walk: found by a search.
        assert_eq!(alongside.find("c").map(|(_, v)| *v), Some(3));
        assert_eq!(alongside.find("z"), None);
    }
}
