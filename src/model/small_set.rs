//! A set of ordered values that is usually tiny.

use std::collections::{btree_set, BTreeSet};

/// How many values a set holds in a vector before it becomes a B-tree.
const MANY: usize = 16;

/// A set of ordered values: a sorted vector, sized to its length, while it holds few; a
/// `BTreeSet` once it holds many.
///
/// Most sets of the model's index hold one value (the one Service claiming a virtual server,
/// the one Service having a cluster IP, the one slice of a Service), where a `BTreeSet`
/// allocates a node of eleven slots: at 10,000 Services those nodes were 26 MiB. A few sets
/// are large (the virtual servers on a node address), hence the B-tree beyond [`MANY`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SmallSet<T> {
    /// Sorted, without duplicates, at most [`MANY`] values.
    Few(Vec<T>),
    /// More than [`MANY`] values.
    Many(BTreeSet<T>),
}

impl<T> Default for SmallSet<T> {
    fn default() -> Self {
        SmallSet::Few(Vec::new())
    }
}

impl<T: Ord> SmallSet<T> {
    /// Adds `value`; `false` when it was there already.
    pub(crate) fn insert(&mut self, value: T) -> bool {
        match self {
            SmallSet::Few(values) => match values.binary_search(&value) {
                Ok(_) => false,
                Err(at) => {
                    if values.len() < MANY {
                        // Room for exactly one more: these sets rarely grow past one value.
                        values.reserve_exact(1);
                        values.insert(at, value);
                    } else {
                        let mut set: BTreeSet<T> = std::mem::take(values).into_iter().collect();
                        set.insert(value);
                        *self = SmallSet::Many(set);
                    }
                    true
                }
            },
            SmallSet::Many(set) => set.insert(value),
        }
    }

    /// Takes `value` out; `false` when it was not there.
    pub(crate) fn remove(&mut self, value: &T) -> bool {
        match self {
            SmallSet::Few(values) => match values.binary_search(value) {
                Ok(at) => {
                    values.remove(at);
                    values.shrink_to_fit();
                    true
                }
                Err(_) => false,
            },
            SmallSet::Many(set) => {
                let removed = set.remove(value);
                if set.len() <= MANY / 2 {
                    *self = SmallSet::Few(std::mem::take(set).into_iter().collect());
                }
                removed
            }
        }
    }

    /// The smallest value.
    pub(crate) fn first(&self) -> Option<&T> {
        match self {
            SmallSet::Few(values) => values.first(),
            SmallSet::Many(set) => set.first(),
        }
    }

    /// Whether `value` is in the set.
    #[cfg(test)]
    pub(crate) fn contains(&self, value: &T) -> bool {
        match self {
            SmallSet::Few(values) => values.binary_search(value).is_ok(),
            SmallSet::Many(set) => set.contains(value),
        }
    }
}

impl<T> SmallSet<T> {
    /// The values in order.
    pub(crate) fn iter(&self) -> Iter<'_, T> {
        match self {
            SmallSet::Few(values) => Iter::Few(values.iter()),
            SmallSet::Many(set) => Iter::Many(set.iter()),
        }
    }

    /// How many values there are.
    pub(crate) fn len(&self) -> usize {
        match self {
            SmallSet::Few(values) => values.len(),
            SmallSet::Many(set) => set.len(),
        }
    }

    /// Whether there are none.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The values of a [`SmallSet`], in order.
pub(crate) enum Iter<'a, T> {
    Few(std::slice::Iter<'a, T>),
    Many(btree_set::Iter<'a, T>),
}

impl<'a, T> Iterator for Iter<'a, T> {
    type Item = &'a T;

    fn next(&mut self) -> Option<&'a T> {
        match self {
            Iter::Few(values) => values.next(),
            Iter::Many(values) => values.next(),
        }
    }
}

impl<'a, T> IntoIterator for &'a SmallSet<T> {
    type Item = &'a T;
    type IntoIter = Iter<'a, T>;

    fn into_iter(self) -> Iter<'a, T> {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_as_a_btree_set_through_growth_and_shrinking() {
        let mut small = SmallSet::default();
        let mut reference = BTreeSet::new();
        // A fixed pseudo-random walk of inserts and removes over 0..40, crossing MANY both ways.
        let mut x: u32 = 7;
        for step in 0..4000 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let value = (x >> 16) % 40;
            let insert = (step / 500) % 2 == 0 || (x >> 8) % 3 == 0;
            if insert {
                assert_eq!(small.insert(value), reference.insert(value));
            } else {
                assert_eq!(small.remove(&value), reference.remove(&value));
            }
            assert_eq!(small.len(), reference.len());
            assert_eq!(small.first(), reference.first());
            assert!(small.iter().eq(reference.iter()));
            assert_eq!(small.contains(&value), reference.contains(&value));
            match &small {
                SmallSet::Few(values) => {
                    assert!(values.len() <= MANY);
                    assert_eq!(values.capacity(), values.len(), "sized to its length");
                }
                SmallSet::Many(set) => assert!(set.len() > MANY / 2),
            }
        }
    }

    #[test]
    fn one_value_takes_room_for_one() {
        let mut set = SmallSet::default();
        assert!(set.is_empty());
        assert!(set.insert("web".to_string()));
        assert!(!set.insert("web".to_string()));
        let SmallSet::Few(values) = &set else {
            panic!("one value is few");
        };
        assert_eq!(values.capacity(), 1);
    }
}
